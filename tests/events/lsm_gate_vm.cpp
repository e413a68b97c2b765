// The BPF-LSM gate against a kernel that runs BPF LSM programs (tests/cli/lsm_test.sh boots
// Debian's kernel under QEMU with this program in its initramfs; this machine's kernel
// refuses lsm/* programs). It loads the agent's real BPF object with the LSM programs
// (BpfObserver, options.lsm), makes a cgroup the gate's container, vouches for one
// program as the agent does after fanotify asked, and checks in child processes of that
// cgroup that the kernel itself refuses (EPERM, before anything of the file runs) every
// other exec and executable mapping in enforce, allows the vouched one, asks again after a
// write, and only reports in measure.
//
// Usage: lsm_gate_vm LISTED UNLISTED (two static programs that exit 0 when run as "true").
// Prints "ok NAME" or "not ok NAME: WHY" per check, then "lsm-gate: N passed, M failed".
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "events/bpf_observer.h"

namespace {

using ctrust::events::BpfObserver;
using ctrust::events::GateMode;
using ctrust::events::ObservedEvent;
using ctrust::events::ObservedKind;

int passed = 0;
int failed = 0;

void result(const std::string& name, bool ok, const std::string& why = "") {
  if (ok) {
    ++passed;
    std::printf("ok %s\n", name.c_str());
  } else {
    ++failed;
    std::printf("not ok %s: %s\n", name.c_str(), why.c_str());
  }
  std::fflush(stdout);
}

const char* kCgroup = "/sys/fs/cgroup/ctrust-lsm-test";

// Runs `body` in a child moved into the test cgroup; returns its exit status (or -signal).
int in_container(const std::function<int()>& body) {
  std::fflush(stdout);
  pid_t pid = ::fork();
  if (pid == 0) {
    std::ofstream(std::string(kCgroup) + "/cgroup.procs") << ::getpid() << std::flush;
    std::_Exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

// Exit codes of the bodies: 0 as wanted; 10 + errno when a call failed.
int exec_file(const char* path) {
  char* argv[] = {const_cast<char*>("true"), nullptr};
  ::execv(path, argv);
  return 10 + errno;
}

int map_exec(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 3;
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
  return p == MAP_FAILED ? 10 + errno : 0;
}

int protect_exec(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 3;
  void* p = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) return 4;
  return ::mprotect(p, 4096, PROT_READ | PROT_EXEC) != 0 ? 10 + errno : 0;
}

int memfd_exec(const char* listed) {
  int fd = static_cast<int>(::syscall(SYS_memfd_create, "payload", 0));
  if (fd < 0) return 3;
  std::ifstream in(listed, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) return 4;
  char* argv[] = {const_cast<char*>("true"), nullptr};
  char* envp[] = {nullptr};
  ::fexecve(fd, argv, envp);
  return 10 + errno;
}

bool copy(const std::string& from, const std::string& to) {
  std::ifstream in(from, std::ios::binary);
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
  out.close();
  return ::chmod(to.c_str(), 0755) == 0;
}

std::string status(int rc) {
  if (rc < 0) return "killed by signal " + std::to_string(-rc);
  if (rc >= 10) return std::string("failed: ") + std::strerror(rc - 10);
  return "exit " + std::to_string(rc);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: lsm_gate_vm LISTED UNLISTED\n");
    return 2;
  }
  const std::string listed = argv[1];
  const std::string unlisted = argv[2];
  result("the kernel runs BPF LSM programs", ctrust::events::lsm_available(),
         "no \"bpf\" in /sys/kernel/security/lsm");
  ctrust::events::BpfObserverOptions options;
  options.lsm = true;
  auto observer = BpfObserver::open(options);
  result("the agent's BPF object loads with the LSM programs", observer.ok(),
         observer ? "" : observer.error().message());
  if (!observer) {
    std::printf("lsm-gate: %d passed, %d failed\n", passed, failed + 1);
    return 1;
  }
  BpfObserver& bpf = **observer;
  ::mkdir(kCgroup, 0755);
  struct stat cg {};
  if (::stat(kCgroup, &cg) != 0) {
    result("a cgroup v2 for the container", false, std::strerror(errno));
    return 1;
  }
  auto vouch = [&](std::uint64_t number, const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return false;
    return bpf.gate_allow(number, st.st_dev, st.st_ino, st.st_ctim, false).ok();
  };

  // --- enforce --------------------------------------------------------------------------
  result("gate the cgroup (enforce)", bpf.gate_container(cg.st_ino, 7, GateMode::kEnforce).ok());
  result("vouch for the listed program", vouch(7, listed));
  int rc = in_container([&] { return exec_file(listed.c_str()); });
  result("enforce: the listed program runs", rc == 0, status(rc));
  rc = in_container([&] { return exec_file(unlisted.c_str()); });
  result("enforce: an unlisted exec fails with EPERM", rc == 10 + EPERM, status(rc));
  rc = in_container([&] { return map_exec(unlisted.c_str()); });
  result("enforce: mmap(PROT_EXEC) of an unlisted file fails with EPERM", rc == 10 + EPERM,
         status(rc));
  rc = in_container([&] { return map_exec(listed.c_str()); });
  result("enforce: mmap(PROT_EXEC) of the listed file works", rc == 0, status(rc));
  rc = in_container([&] { return protect_exec(unlisted.c_str()); });
  result("enforce: mprotect(PROT_EXEC) of an unlisted file's mapping fails with EPERM",
         rc == 10 + EPERM, status(rc));
  rc = in_container([&] { return memfd_exec(listed.c_str()); });
  result("enforce: fexecve of a memfd fails with EPERM", rc == 10 + EPERM, status(rc));
  // A vouched file written afterwards: its ctime moved, so the verdict no longer holds.
  std::string copy_path = "/tmp/listed-copy";
  result("a copy of the listed program", copy(listed, copy_path) && vouch(7, copy_path));
  rc = in_container([&] { return exec_file(copy_path.c_str()); });
  result("enforce: the vouched copy runs", rc == 0, status(rc));
  ::sleep(1);  // a ctime the old one cannot equal, whatever the timestamp granularity
  { std::ofstream(copy_path, std::ios::app) << "x"; }
  rc = in_container([&] { return exec_file(copy_path.c_str()); });
  result("enforce: written after it was vouched for, it fails with EPERM", rc == 10 + EPERM,
         status(rc));
  // Outside the container's cgroup nothing is refused.
  pid_t pid = ::fork();
  if (pid == 0) std::_Exit(exec_file(unlisted.c_str()));
  int st = 0;
  ::waitpid(pid, &st, 0);
  result("outside the container the unlisted program runs", WIFEXITED(st) && WEXITSTATUS(st) == 0,
         status(WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st)));

  // The records: each refusal reported as the gate's, refused by the LSM (no kill).
  int refused_execs = 0;
  int refused_maps = 0;
  for (int i = 0; i < 5; ++i) {
    (void)bpf.poll(100, [&](const ObservedEvent& e) {
      if (e.container != 7 || !e.lsm || !e.killed) return;
      if (e.kind == ObservedKind::kExec) ++refused_execs;
      if (e.kind == ObservedKind::kMap) ++refused_maps;
    });
  }
  result("the refused execs are reported (unlisted, memfd, written copy)", refused_execs >= 3,
         std::to_string(refused_execs) + " records");
  result("the refused mappings are reported (mmap, mprotect)", refused_maps >= 2,
         std::to_string(refused_maps) + " records");

  // --- measure: reported, not refused ----------------------------------------------------
  result("the container switched to measure",
         bpf.gate_container(cg.st_ino, 7, GateMode::kMeasure).ok());
  rc = in_container([&] { return exec_file(unlisted.c_str()); });
  result("measure: the unlisted program runs", rc == 0, status(rc));
  int reported = 0;
  for (int i = 0; i < 5; ++i) {
    (void)bpf.poll(100, [&](const ObservedEvent& e) {
      if (e.container == 7 && e.lsm && e.unvouched && !e.killed && e.kind == ObservedKind::kExec) {
        ++reported;
      }
    });
  }
  result("measure: the unlisted exec is reported for measurement", reported >= 1,
         std::to_string(reported) + " records");

  std::printf("lsm-gate: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
