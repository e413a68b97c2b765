// The BPF observers for real (privileged: CI runs as root): children exec /bin/true, exec a
// memfd copy of busybox and unshare a mount namespace, and the events they cause are
// checked against stat() of the same objects. Record decoding is also tested on crafted
// bytes, which needs no privileges.
#include "events/bpf_observer.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "crypto/digest.h"
#include "observer_events.h"

namespace ctrust::events {
namespace {

bool in_ci() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

constexpr const char* kTrue = "/bin/true";
constexpr const char* kBusybox = "/bin/busybox";

std::uint64_t own_mnt_ns() {
  struct stat st {};
  return ::stat("/proc/self/ns/mnt", &st) == 0 ? st.st_ino : 0;
}

// The inode of this process's cgroup v2 directory (what bpf_get_current_cgroup_id()
// returns), or 0 without a cgroup2 mount.
std::uint64_t own_cgroup_id() {
  std::ifstream mounts("/proc/self/mounts");
  std::string dev, dir, type, rest, root;
  while (mounts >> dev >> dir >> type && std::getline(mounts, rest)) {
    if (type == "cgroup2") root = dir;
  }
  std::ifstream cgroup("/proc/self/cgroup");
  std::string line, path;
  while (std::getline(cgroup, line)) {
    if (line.rfind("0::", 0) == 0) path = line.substr(3);
  }
  struct stat st {};
  if (root.empty() || path.empty() || ::stat((root + path).c_str(), &st) != 0) return 0;
  return st.st_ino;
}

// Forks; the child runs `body` (only async-signal-safe calls) and exits with its value.
// Returns the child's pid once it has exited, and its exit status.
struct Child {
  pid_t pid = -1;
  int status = -1;
};
template <typename Body>
Child run_child(Body body) {
  Child c;
  c.pid = ::fork();
  if (c.pid == 0) ::_exit(body());
  int status = 0;
  if (c.pid > 0 && ::waitpid(c.pid, &status, 0) == c.pid && WIFEXITED(status)) {
    c.status = WEXITSTATUS(status);
  }
  return c;
}

class BpfObserverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (::geteuid() != 0) why = "needs root (loading BPF programs)";
    if (why.empty() && ::access(kBusybox, X_OK) != 0) why = "needs busybox-static";
    if (!why.empty()) {
      if (in_ci()) FAIL() << why;
      GTEST_SKIP() << why;
    }
    auto observer = BpfObserver::open();
    ASSERT_TRUE(observer) << observer.error().message();
    observer_ = std::move(*observer);
  }

  // Drains events until one satisfies `want` or `timeout_ms` passes. The event of a
  // child that has exited is already in the ring, so the wait is only for the drain.
  template <typename Pred>
  std::optional<ObservedEvent> find(Pred want, int timeout_ms = 3000) {
    std::optional<ObservedEvent> found;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!found && std::chrono::steady_clock::now() < deadline) {
      auto n = observer_->poll(100, [&](const ObservedEvent& e) {
        if (!found && want(e)) found = e;
      });
      if (!n) {
        ADD_FAILURE() << n.error().message();
        break;
      }
    }
    return found;
  }

  std::unique_ptr<BpfObserver> observer_;
};

TEST_F(BpfObserverTest, ExecOfBinTrueIsSeenWithItsFileAndNamespace) {
  struct stat st {};
  ASSERT_EQ(::stat(kTrue, &st), 0) << std::strerror(errno);
  Child child = run_child([] {
    char* argv[] = {const_cast<char*>(kTrue), nullptr};
    ::execv(kTrue, argv);
    return 127;
  });
  ASSERT_GT(child.pid, 0);
  ASSERT_EQ(child.status, 0);
  auto e = find([&](const ObservedEvent& ev) {
    return ev.kind == ObservedKind::kExec && ev.pid == child.pid;
  });
  ASSERT_TRUE(e) << "no exec event for pid " << child.pid;
  EXPECT_EQ(e->filename, kTrue);
  EXPECT_EQ(e->tid, child.pid);
  EXPECT_EQ(e->ppid, ::getpid());
  EXPECT_EQ(e->ino, st.st_ino);
  EXPECT_EQ(e->dev, st.st_dev);
  EXPECT_EQ(e->mnt_ns, own_mnt_ns());
  EXPECT_NE(e->mnt_id, 0U);
  EXPECT_GT(e->nlink, 0U);
  EXPECT_FALSE(e->fileless());
  EXPECT_FALSE(e->read_failed);
  EXPECT_FALSE(e->filename_truncated);
  if (std::uint64_t cg = own_cgroup_id(); cg != 0) {
    EXPECT_EQ(e->cgroup_id, cg);
  }
}

TEST_F(BpfObserverTest, ExecInANewMountNamespaceCarriesThatNamespace) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  Child child = run_child([&] {
    ::close(pipe_fds[0]);
    if (::unshare(CLONE_NEWNS) != 0) return 126;
    struct stat ns {};
    if (::stat("/proc/self/ns/mnt", &ns) != 0) return 125;
    std::uint64_t ino = ns.st_ino;
    if (::write(pipe_fds[1], &ino, sizeof(ino)) != sizeof(ino)) return 124;
    char* argv[] = {const_cast<char*>(kTrue), nullptr};
    ::execv(kTrue, argv);
    return 127;
  });
  ::close(pipe_fds[1]);
  std::uint64_t child_ns = 0;
  ASSERT_EQ(::read(pipe_fds[0], &child_ns, sizeof(child_ns)), sizeof(child_ns));
  ::close(pipe_fds[0]);
  ASSERT_EQ(child.status, 0);
  ASSERT_NE(child_ns, own_mnt_ns());
  auto e = find([&](const ObservedEvent& ev) {
    return ev.kind == ObservedKind::kExec && ev.pid == child.pid;
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->mnt_ns, child_ns);
}

TEST_F(BpfObserverTest, UnshareOfAMountNamespaceIsSeen) {
  Child child = run_child([] { return ::unshare(CLONE_NEWNS) == 0 ? 0 : 1; });
  ASSERT_EQ(child.status, 0);
  auto e = find([&](const ObservedEvent& ev) {
    return ev.kind == ObservedKind::kNamespace && ev.pid == child.pid;
  });
  ASSERT_TRUE(e) << "no namespace event for pid " << child.pid;
  EXPECT_EQ(e->syscall, NamespaceSyscall::kUnshare);
  EXPECT_NE(e->ns_flags & kCloneNewNs, 0U);
  EXPECT_EQ(e->ns_flags & kCloneNewUser, 0U);
  EXPECT_EQ(e->mnt_ns, own_mnt_ns());  // recorded at entry: still the parent's namespace
  EXPECT_FALSE(e->flags_unknown);
}

TEST_F(BpfObserverTest, SetnsIsSeenWithItsNstype) {
  Child child = run_child([] {
    int fd = ::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 2;
    return ::setns(fd, CLONE_NEWNS) == 0 ? 0 : 1;
  });
  ASSERT_EQ(child.status, 0);
  auto e = find([&](const ObservedEvent& ev) {
    return ev.kind == ObservedKind::kNamespace && ev.pid == child.pid;
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->syscall, NamespaceSyscall::kSetns);
  EXPECT_EQ(e->ns_flags, kCloneNewNs);
  EXPECT_GE(e->setns_fd, 0);
}

TEST_F(BpfObserverTest, Clone3WithNewNamespaceFlagsIsSeen) {
  // clone3 straight through syscall(): glibc's clone3 wrapper is internal.
  Child child = run_child([] {
    struct clone_args_v0 {
      std::uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    } args{};
    args.flags = CLONE_NEWNS | CLONE_NEWUTS;
    args.exit_signal = SIGCHLD;
    long pid = ::syscall(SYS_clone3, &args, sizeof(args));
    if (pid == 0) ::_exit(0);
    if (pid < 0) return 1;
    int status = 0;
    return ::waitpid(static_cast<pid_t>(pid), &status, 0) == pid ? 0 : 2;
  });
  ASSERT_EQ(child.status, 0);
  auto e = find([&](const ObservedEvent& ev) {
    return ev.kind == ObservedKind::kNamespace && ev.pid == child.pid;
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->syscall, NamespaceSyscall::kClone3);
  EXPECT_EQ(e->ns_flags & (kCloneNewNs | kCloneNewUts), kCloneNewNs | kCloneNewUts);
  EXPECT_FALSE(e->flags_unknown);
}

TEST_F(BpfObserverTest, ExecOfAMemfdIsFlagged) {
  std::ifstream in(kBusybox, std::ios::binary);
  std::vector<char> image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(image.empty());
  int rw = ::memfd_create("ctrust-test", 0);
  ASSERT_GE(rw, 0) << std::strerror(errno);
  ASSERT_EQ(::write(rw, image.data(), image.size()), static_cast<ssize_t>(image.size()));
  // Exec through a read-only descriptor: kernels that refuse to exec an inode open for
  // writing would fail with ETXTBSY (6.18 allows it; the test should not depend on that).
  std::string self_fd = "/proc/self/fd/" + std::to_string(rw);
  int fd = ::open(self_fd.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::close(rw);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);

  Child child = run_child([fd] {
    // busybox runs the applet its argv[0] names.
    char* argv[] = {const_cast<char*>("true"), nullptr};
    char* envp[] = {nullptr};
    ::syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
    return 127;
  });
  ::close(fd);
  ASSERT_EQ(child.status, 0) << "execveat of the memfd failed";
  auto e = find([&](const ObservedEvent& ev) {
    return ev.kind == ObservedKind::kExec && ev.pid == child.pid;
  });
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->memfd_name);
  EXPECT_TRUE(e->fileless());
  EXPECT_EQ(e->ino, st.st_ino);
  EXPECT_EQ(e->dev, st.st_dev);
  EXPECT_EQ(e->nlink, 0U);
  EXPECT_TRUE(e->unlinked);
  EXPECT_EQ(e->filename, "/dev/fd/" + std::to_string(fd));
}

// --- the exec gate -------------------------------------------------------------------------

// A cgroup v2 of the test's own, removed again at the end.
class TestCgroup {
 public:
  TestCgroup() {
    std::ifstream mounts("/proc/self/mounts");
    std::string dev, dir, type, rest, root;
    while (mounts >> dev >> dir >> type && std::getline(mounts, rest)) {
      if (type == "cgroup2") root = dir;
    }
    if (root.empty()) return;
    path_ = root + "/ctrust-gate-test-" + std::to_string(::getpid());
    struct stat st {};
    if (::mkdir(path_.c_str(), 0755) != 0 || ::stat(path_.c_str(), &st) != 0) {
      path_.clear();
      return;
    }
    id_ = st.st_ino;
  }
  ~TestCgroup() {
    if (!path_.empty()) ::rmdir(path_.c_str());
  }
  TestCgroup(const TestCgroup&) = delete;
  TestCgroup& operator=(const TestCgroup&) = delete;
  const std::string& path() const { return path_; }
  std::uint64_t id() const { return id_; }

 private:
  std::string path_;
  std::uint64_t id_ = 0;
};

struct Outcome {
  pid_t pid = -1;
  bool killed = false;  // by SIGKILL
  int code = -1;        // exit code otherwise
};

// Forks a child that moves itself into `cgroup` (writing 0 to cgroup.procs moves the
// writer), then runs `body` and exits with its value.
template <typename Body>
Outcome run_in_cgroup(const TestCgroup& cgroup, Body body) {
  std::string procs = cgroup.path() + "/cgroup.procs";
  Outcome o;
  o.pid = ::fork();
  if (o.pid == 0) {
    int fd = ::open(procs.c_str(), O_WRONLY);
    if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(120);
    ::close(fd);
    ::_exit(body());
  }
  int status = 0;
  if (o.pid > 0 && ::waitpid(o.pid, &status, 0) == o.pid) {
    o.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (WIFEXITED(status)) o.code = WEXITSTATUS(status);
  }
  return o;
}

// The child execs busybox's `touch MARK`: MARK exists only if the new image ran.
int exec_touch(const char* mark) {
  char* argv[] = {const_cast<char*>("touch"), const_cast<char*>(mark), nullptr};
  char* envp[] = {nullptr};
  ::execve(kBusybox, argv, envp);
  return 127;
}

// The child maps `path` executable: exit 0 if the call returned.
int map_exec(const char* path) {
  int fd = ::open(path, O_RDONLY);
  if (fd < 0) return 121;
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
  return p == MAP_FAILED ? 122 : 0;
}

TEST_F(BpfObserverTest, TheGateKillsWhatWasNotVouchedForBeforeItRuns) {
  TestCgroup cg;
  if (cg.path().empty()) {
    if (in_ci()) FAIL() << "no cgroup v2 hierarchy to make a cgroup in";
    GTEST_SKIP() << "no cgroup v2 hierarchy to make a cgroup in";
  }
  char dir_template[] = "/tmp/ctrust-gate-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  std::string dir = dir_template;
  std::string mark = dir + "/ran";
  std::string lib = dir + "/lib.bin";
  {
    std::ofstream out(lib, std::ios::binary);
    out << std::string(8192, 'x');
  }
  ASSERT_TRUE(observer_->gate_container(cg.id(), 7, GateMode::kEnforce));

  // An exec nobody vouched for: killed before the image's first instruction.
  Outcome o = run_in_cgroup(cg, [&] { return exec_touch(mark.c_str()); });
  EXPECT_TRUE(o.killed) << "exit " << o.code;
  EXPECT_NE(::access(mark.c_str(), F_OK), 0) << "the unvouched image ran";
  auto e = find(
      [&](const ObservedEvent& ev) { return ev.kind == ObservedKind::kExec && ev.pid == o.pid; });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->container, 7U);
  EXPECT_TRUE(e->unvouched);
  EXPECT_TRUE(e->killed);

  // The same inode number on another device is another file, even pinned.
  struct stat bb {};
  ASSERT_EQ(::stat(kBusybox, &bb), 0);
  ASSERT_TRUE(observer_->gate_allow(7, makedev(250, 7), bb.st_ino, bb.st_ctim, true));
  o = run_in_cgroup(cg, [&] { return exec_touch(mark.c_str()); });
  EXPECT_TRUE(o.killed) << "a verdict for another device's inode let this one run";

  // Vouched for as it is now: it runs, and no record is written.
  ASSERT_TRUE(observer_->gate_allow(7, bb.st_dev, bb.st_ino, bb.st_ctim));
  o = run_in_cgroup(cg, [&] { return exec_touch(mark.c_str()); });
  EXPECT_FALSE(o.killed);
  EXPECT_EQ(o.code, 0);
  EXPECT_EQ(::access(mark.c_str(), F_OK), 0);

  // An executable mapping of a file nobody vouched for: killed in the call.
  o = run_in_cgroup(cg, [&] { return map_exec(lib.c_str()); });
  EXPECT_TRUE(o.killed) << "exit " << o.code;
  auto m = find(
      [&](const ObservedEvent& ev) { return ev.kind == ObservedKind::kMap && ev.pid == o.pid; });
  ASSERT_TRUE(m);
  EXPECT_EQ(m->map_syscall, MapSyscall::kMmap);
  EXPECT_TRUE(m->killed);
  EXPECT_EQ(m->name, "lib.bin");
  struct stat st {};
  ASSERT_EQ(::stat(lib.c_str(), &st), 0);
  EXPECT_EQ(m->ino, st.st_ino);

  // Vouched for: mapped. Then changed (chmod moves ctime): the entry no longer counts.
  ASSERT_TRUE(observer_->gate_allow(7, st.st_dev, st.st_ino, st.st_ctim));
  o = run_in_cgroup(cg, [&] { return map_exec(lib.c_str()); });
  EXPECT_FALSE(o.killed);
  EXPECT_EQ(o.code, 0);
  ::usleep(10000);  // a later ctime, also on coarse clocks
  ASSERT_EQ(::chmod(lib.c_str(), 0600), 0);
  o = run_in_cgroup(cg, [&] { return map_exec(lib.c_str()); });
  EXPECT_TRUE(o.killed) << "a changed file kept its old verdict";

  // Pinned (the agent holds a lease: the content is what was judged): a ctime change does
  // not retire it; unpinned, it does.
  ASSERT_EQ(::stat(lib.c_str(), &st), 0);
  ASSERT_TRUE(observer_->gate_allow(7, st.st_dev, st.st_ino, st.st_ctim, true));
  ::usleep(10000);
  ASSERT_EQ(::chmod(lib.c_str(), 0644), 0);
  o = run_in_cgroup(cg, [&] { return map_exec(lib.c_str()); });
  EXPECT_FALSE(o.killed) << "a pinned verdict followed the ctime";
  ASSERT_TRUE(observer_->gate_unpin(7, st.st_dev, st.st_ino));
  o = run_in_cgroup(cg, [&] { return map_exec(lib.c_str()); });
  EXPECT_TRUE(o.killed) << "an unpinned verdict ignored the ctime";

  // Forgotten: the entries go, and the cgroup is no longer gated.
  EXPECT_EQ(observer_->gate_entries(), 3U);
  ASSERT_TRUE(observer_->gate_release(cg.id(), 7));
  EXPECT_EQ(observer_->gate_entries(), 0U);
  o = run_in_cgroup(cg, [&] { return map_exec(lib.c_str()); });
  EXPECT_FALSE(o.killed);
  EXPECT_EQ(o.code, 0);

  // Measure: reported, not killed.
  ASSERT_TRUE(observer_->gate_container(cg.id(), 8, GateMode::kMeasure));
  o = run_in_cgroup(cg, [&] { return map_exec(lib.c_str()); });
  EXPECT_FALSE(o.killed);
  EXPECT_EQ(o.code, 0);
  m = find(
      [&](const ObservedEvent& ev) { return ev.kind == ObservedKind::kMap && ev.pid == o.pid; });
  ASSERT_TRUE(m);
  EXPECT_EQ(m->container, 8U);
  EXPECT_FALSE(m->killed);
  ASSERT_TRUE(observer_->gate_release(cg.id(), 8));
  ::unlink(mark.c_str());
  ::unlink(lib.c_str());
  ::rmdir(dir.c_str());
}

TEST_F(BpfObserverTest, LostCounterStartsAtZero) { EXPECT_EQ(observer_->lost(), 0U); }

TEST_F(BpfObserverTest, AFullRingBufferCountsLostRecords) {
  BpfObserverOptions options;
  options.namespaces = false;
  options.ring_buffer_bytes = static_cast<std::uint32_t>(::sysconf(_SC_PAGESIZE));
  auto small = BpfObserver::open(options);
  ASSERT_TRUE(small) << small.error().message();
  EXPECT_EQ((*small)->lost(), 0U);
  // A page holds about a dozen exec records; nothing drains it while these run.
  for (int i = 0; i < 30; ++i) {
    Child child = run_child([] {
      char* argv[] = {const_cast<char*>(kTrue), nullptr};
      ::execv(kTrue, argv);
      return 127;
    });
    ASSERT_EQ(child.status, 0);
  }
  EXPECT_GE((*small)->lost(), 10U);
  // What did fit is still delivered.
  std::size_t seen = 0;
  auto n = (*small)->poll(0, [&](const ObservedEvent&) { ++seen; });
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_GT(seen, 0U);
  EXPECT_EQ(*n, seen);
}

TEST_F(BpfObserverTest, ObjectDigestsAreStableAndMatchTheObjectFile) {
  auto first = observer_->object_digests();
  ASSERT_FALSE(first.empty());
  auto again = BpfObserver::open();
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ((*again)->object_digests(), first);
  EXPECT_EQ(first[0].first, "observer.bpf.o");
  ASSERT_EQ(first[0].second.size(), std::string("sha256:").size() + 64);
  EXPECT_EQ(first[0].second.rfind("sha256:", 0), 0U);
  // An independent hash of the object file the skeleton was generated from.
  auto file = crypto::digest_file(crypto::HashAlg::kSha256, CTRUST_BPF_OBJECT);
  ASSERT_TRUE(file) << file.error().message();
  EXPECT_EQ(first[0].second, "sha256:" + file->hex());
}

TEST(BpfObserverOptionsTest, RejectsUnusableOptionsBeforeTouchingTheKernel) {
  BpfObserverOptions none;
  none.exec = false;
  none.namespaces = false;
  auto a = BpfObserver::open(none);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code(), Errc::kInvalidArgument);
  BpfObserverOptions odd;
  odd.ring_buffer_bytes = 12345;
  auto b = BpfObserver::open(odd);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), Errc::kInvalidArgument);
}

// Decoding: crafted records, no kernel needed.
ctrust_bpf_exec_event exec_record() {
  ctrust_bpf_exec_event r{};
  r.hdr.kind = CTRUST_BPF_EVENT_EXEC;
  r.hdr.version = CTRUST_BPF_ABI_VERSION;
  r.hdr.size = sizeof(r);
  r.pid = 42;
  r.dev = (8U << 20) | 3U;  // kernel encoding of 8:3
  r.flags = CTRUST_BPF_EXEC_MEMFD_NAME;
  std::memcpy(r.filename, "/bin/sh", 8);
  r.filename_len = 7;
  return r;
}

ByteView bytes_of(const void* p, std::size_t n) { return {static_cast<const std::uint8_t*>(p), n}; }

TEST(BpfRecordDecodeTest, DecodesAnExecRecord) {
  auto r = exec_record();
  auto e = decode_observer_record(bytes_of(&r, sizeof(r)));
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->kind, ObservedKind::kExec);
  EXPECT_EQ(e->pid, 42);
  EXPECT_EQ(e->filename, "/bin/sh");
  EXPECT_EQ(e->dev, makedev(8, 3));
  EXPECT_TRUE(e->memfd_name);
  EXPECT_FALSE(e->unlinked);
}

TEST(BpfRecordDecodeTest, AHeldExecIsOneInNoGatedContainer) {
  auto r = exec_record();
  r.flags = CTRUST_BPF_EXEC_HELD;
  auto e = decode_observer_record(bytes_of(&r, sizeof(r)));
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_TRUE(e->held);
  EXPECT_FALSE(decode_observer_record(bytes_of(&r, sizeof(r)))->unvouched);
  // Held in a gated container, or held and unvouched: the programs never write that.
  r.container = 7;
  EXPECT_FALSE(decode_observer_record(bytes_of(&r, sizeof(r))));
  r.container = 0;
  r.flags = CTRUST_BPF_EXEC_HELD | CTRUST_BPF_EXEC_UNVOUCHED;
  EXPECT_FALSE(decode_observer_record(bytes_of(&r, sizeof(r))));
}

TEST(BpfRecordDecodeTest, FilenameIsBoundedByBufferLengthAndNul) {
  auto r = exec_record();
  std::memset(r.filename, 'a', sizeof(r.filename));  // no NUL at all
  r.filename_len = 100000;
  auto e = decode_observer_record(bytes_of(&r, sizeof(r)));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->filename.size(), sizeof(r.filename));
  r = exec_record();
  r.filename_len = 3;  // shorter than the string: the length wins
  e = decode_observer_record(bytes_of(&r, sizeof(r)));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->filename, "/bi");
}

TEST(BpfRecordDecodeTest, RejectsShortWrongSizeUnknownKindAndVersion) {
  auto r = exec_record();
  EXPECT_FALSE(decode_observer_record(bytes_of(&r, 8)));
  EXPECT_FALSE(decode_observer_record(bytes_of(&r, sizeof(r) - 1)));
  auto bad_size = r;
  bad_size.hdr.size = sizeof(r) + 8;
  EXPECT_FALSE(decode_observer_record(bytes_of(&bad_size, sizeof(bad_size))));
  auto bad_kind = r;
  bad_kind.hdr.kind = 99;
  EXPECT_FALSE(decode_observer_record(bytes_of(&bad_kind, sizeof(bad_kind))));
  auto bad_version = r;
  bad_version.hdr.version = CTRUST_BPF_ABI_VERSION + 1;
  EXPECT_FALSE(decode_observer_record(bytes_of(&bad_version, sizeof(bad_version))));
  // A namespace header on an exec-sized record.
  auto mixed = r;
  mixed.hdr.kind = CTRUST_BPF_EVENT_NAMESPACE;
  EXPECT_FALSE(decode_observer_record(bytes_of(&mixed, sizeof(mixed))));
}

TEST(BpfRecordDecodeTest, DecodesANamespaceRecordAndRejectsUnknownSyscalls) {
  ctrust_bpf_namespace_event r{};
  r.hdr.kind = CTRUST_BPF_EVENT_NAMESPACE;
  r.hdr.version = CTRUST_BPF_ABI_VERSION;
  r.hdr.size = sizeof(r);
  r.pid = 7;
  r.syscall = CTRUST_BPF_NS_CLONE3;
  r.flags = kCloneNewPid;
  r.read_failed = 1;
  auto e = decode_observer_record(bytes_of(&r, sizeof(r)));
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->kind, ObservedKind::kNamespace);
  EXPECT_EQ(e->syscall, NamespaceSyscall::kClone3);
  EXPECT_EQ(e->ns_flags, kCloneNewPid);
  EXPECT_TRUE(e->flags_unknown);
  r.syscall = 0;
  EXPECT_FALSE(decode_observer_record(bytes_of(&r, sizeof(r))));
}

TEST(BpfRecordDecodeTest, DecodesTheGatesFlagsAndMapRecords) {
  auto r = exec_record();
  r.container = 5;
  r.flags = CTRUST_BPF_EXEC_UNVOUCHED | CTRUST_BPF_EXEC_KILLED;
  auto e = decode_observer_record(bytes_of(&r, sizeof(r)));
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->container, 5U);
  EXPECT_TRUE(e->unvouched);
  EXPECT_TRUE(e->killed);
  r.flags = CTRUST_BPF_EXEC_KILLED;  // killed but vouched for: no such record
  EXPECT_FALSE(decode_observer_record(bytes_of(&r, sizeof(r))));

  ctrust_bpf_map_event m{};
  m.hdr.kind = CTRUST_BPF_EVENT_MAP;
  m.hdr.version = CTRUST_BPF_ABI_VERSION;
  m.hdr.size = sizeof(m);
  m.pid = 9;
  m.container = 3;
  m.ino = 1234;
  m.dev = (8U << 20) | 1U;
  m.syscall = CTRUST_BPF_MAP_MPROTECT;
  m.fd = -1;
  m.flags = CTRUST_BPF_MAP_KILLED | CTRUST_BPF_MAP_MEMFD_NAME;
  std::memset(m.name, 'n', sizeof(m.name));  // no NUL: bounded by the buffer
  auto d = decode_observer_record(bytes_of(&m, sizeof(m)));
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_EQ(d->kind, ObservedKind::kMap);
  EXPECT_EQ(d->map_syscall, MapSyscall::kMprotect);
  EXPECT_EQ(d->container, 3U);
  EXPECT_EQ(d->ino, 1234U);
  EXPECT_EQ(d->dev, makedev(8, 1));
  EXPECT_TRUE(d->unvouched);
  EXPECT_TRUE(d->killed);
  EXPECT_TRUE(d->memfd_name);
  EXPECT_FALSE(d->unresolved);
  EXPECT_EQ(d->name.size(), sizeof(m.name));
  m.syscall = 9;
  EXPECT_FALSE(decode_observer_record(bytes_of(&m, sizeof(m))));
  m.syscall = CTRUST_BPF_MAP_MMAP;
  EXPECT_FALSE(decode_observer_record(bytes_of(&m, sizeof(m) - 8)));
}

}  // namespace
}  // namespace ctrust::events
