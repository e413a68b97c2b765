// The exec decision (agent/exec_pipeline.h) driven through its seam with synthetic events,
// as falcosecurity/libs drives its inspector with a test-input engine: no root, no
// fanotify group, no BPF. The permission events are Questions on real files, the gate's
// and the observer's reports are ObservedEvents built here, and the environment records
// what the decision did to the outside world. The container log is real (a swtpm vTPM),
// and so are the digest cache's leases, the registry and the policy.
//
// Its real counterpart, the same decisions with the kernel asking: exec_guard_test.cpp,
// tests/cli/exec_path_test.sh and agent_test.sh.
#include "agent/exec_pipeline.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "imalog/binary.h"
#include "imalog/entry.h"
#include "tpm/swtpm_fixture.h"

// main(): tests/support/lease_signal_main.cpp (the lease signal blocked before any thread).

namespace ctrust::agent {
namespace {

using nlohmann::json;
constexpr pid_t kAsker = 4242;  // the synthetic events' process (never signalled: see kill())

// A permission event on a real file, answered into a future.
class SyntheticQuestion final : public Question {
 public:
  SyntheticQuestion(const std::string& path, bool exec, pid_t pid,
                    std::promise<events::Verdict> answered)
      : file_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)), answered_(std::move(answered)) {
    event_.exec = exec;
    event_.pid = pid;
    event_.fd = file_.get();
    event_.path = path;
  }
  ~SyntheticQuestion() override {
    // As fanotify does with an event the agent drops: the fail verdict.
    if (!done_) answered_.set_value(events::Verdict::kDeny);
  }
  const events::PermissionEvent& event() const override { return event_; }
  Result<void> answer(events::Verdict verdict) override {
    if (!done_) answered_.set_value(verdict);
    done_ = true;
    return ok_result();
  }
  UniqueFd take_fd() override { return std::move(file_); }

 private:
  UniqueFd file_;
  events::PermissionEvent event_;
  std::promise<events::Verdict> answered_;
  bool done_ = false;
};

// Records what the decision did outside itself.
class RecordingEnvironment final : public ExecEnvironment {
 public:
  struct Vouched {
    std::uint64_t number;
    dev_t dev;
    ino_t ino;
    bool pinned;
  };
  void publish(const json& event) override {
    std::lock_guard lock(mutex);
    events.push_back(event);
  }
  Result<void> vouch(std::uint64_t number, dev_t dev, ino_t ino, const struct timespec&,
                     bool pinned) override {
    std::lock_guard lock(mutex);
    if (gate_full) return Error(Errc::kIo, "gate map full");
    vouched.push_back({number, dev, ino, pinned});
    return ok_result();
  }
  Result<void> ignore_data_opens(int) override {
    std::lock_guard lock(mutex);
    ++ignored;
    return ok_result();
  }
  void kill(pid_t pid, ino_t mnt_ns) override {
    std::lock_guard lock(mutex);
    killed.emplace_back(pid, mnt_ns);
  }
  void resume(pid_t pid) override {
    std::lock_guard lock(mutex);
    resumed.push_back(pid);
  }
  Result<RunningFile> open_running(const events::ObservedEvent& e) override {
    if (not_yet > 0) {
      --not_yet;
      return Error(Errc::kNotFound, "the process runs another file now");
    }
    if (running.empty() || (running_pid != 0 && e.pid != running_pid)) {
      return Error(Errc::kNotFound, "the process is gone");
    }
    RunningFile f;
    f.fd.reset(::open(running.c_str(), O_RDONLY | O_CLOEXEC));
    f.path = running;
    return f;
  }
  Result<RunningFile> open_named(const events::ObservedEvent& e) override {
    if (named.empty()) return open_running(e);
    RunningFile f;
    f.fd.reset(::open(named.c_str(), O_RDONLY | O_CLOEXEC));
    if (!f.fd) return Error(Errc::kNotFound, "no such file");
    f.path = named;
    return f;
  }
  std::vector<pid_t> mapping_executable(const std::string&,
                                        const std::vector<std::pair<dev_t, ino_t>>&) override {
    return mappers;
  }
  ino_t pid_namespace(pid_t) override { return pid_ns; }

  std::vector<json> published() {
    std::lock_guard lock(mutex);
    return events;
  }
  std::vector<Vouched> vouches() {
    std::lock_guard lock(mutex);
    return vouched;
  }

  std::mutex mutex;
  std::vector<json> events;
  std::vector<Vouched> vouched;
  int ignored = 0;
  std::vector<std::pair<pid_t, ino_t>> killed;
  std::vector<pid_t> resumed;
  std::string named;  // what open_named() finds ("": what open_running() finds)
  bool gate_full = false;
  std::string running;         // what open_running() finds
  pid_t running_pid = 0;       // ... in this process only (0: any)
  int not_yet = 0;             // ... after this many calls that find another file
  std::vector<pid_t> mappers;  // what mapping_executable() finds
  ino_t pid_ns = 0;            // what pid_namespace() says
};

struct LogLine {
  std::string name;
  bool violation;
};

class ExecPipelineTest : public testing::SwtpmTest {
 protected:
  void SetUp() override {
    dir_ = temp_.file("files");
    ASSERT_EQ(::mkdir(dir_.c_str(), 0755), 0);
    // Executables by their magic: the decision only looks at the first bytes.
    const std::string elf =
        "\x7f"
        "ELF";  // the ELF magic, then anything
    write(dir_ + "/listed", elf + " listed program");
    write(dir_ + "/unlisted", elf + " unlisted program");
    write(dir_ + "/data.txt", "just data\n");
    write(dir_ + "/huge", elf + std::string(8192, 'x'));
    auto listed = crypto::digest_file(crypto::HashAlg::kSha256, dir_ + "/listed");
    ASSERT_TRUE(listed);
    auto loaded = std::make_shared<LoadedPolicy>();
    loaded->name = "test";
    loaded->policy.name = "test";
    loaded->policy.issuer = "test";
    loaded->policy.not_before = 0;
    loaded->policy.not_after = 4102444800;  // 2100-01-01
    loaded->policy.allow.push_back(policy::Allow{*listed, {}});
    auto compiled = policy::CompiledPolicy::compile(loaded->policy);
    ASSERT_TRUE(compiled) << compiled.error().message();
    loaded->compiled.emplace(std::move(*compiled));
    policy_ = loaded;
    auto cache = DigestCache::create(64);
    ASSERT_TRUE(cache) << cache.error().message();
    cache_.emplace(std::move(*cache));
  }

  void TearDown() override { pipeline_.reset(); }

  static void write(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  }

  // A container in `mode` whose marked mount is the one the test files are on.
  std::shared_ptr<Container> container(const std::string& id, policy::Mode mode,
                                       bool gated = true) {
    auto c = std::make_shared<Container>();
    c->number = registry_.next_number();
    c->id = id;
    c->mode = mode;
    c->policy = policy_;
    c->gated = gated;
    c->mnt_ns = 1000 + c->number;  // not a real namespace: only unwatched_exec() reads it
    c->log_path = temp_.file(id + ".log");
    // A vTPM of its own (the fixture's start_swtpm() keeps only one).
    tpm::SwtpmOptions options;
    options.state_dir = temp_.file(id + "-tpm");
    options.socket = options.state_dir + "/tpm.sock";
    EXPECT_EQ(::mkdir(options.state_dir.c_str(), 0700), 0);
    auto swtpm = tpm::Swtpm::start(options);
    EXPECT_TRUE(swtpm) << swtpm.error().message();
    auto vtpm = tpm::Tpm::open(swtpm->tcti());
    EXPECT_TRUE(vtpm) << vtpm.error().message();
    swtpms_.push_back(std::move(*swtpm));
    auto log = ContainerLog::open(c->log_path, std::move(*vtpm));
    EXPECT_TRUE(log) << log.error().message();
    c->log = std::make_unique<ContainerLog>(std::move(*log));
    c->guard = std::make_unique<ExecGuard>(&*policy_->compiled, mode, c->log.get());
    Mark m;
    m.fd.reset(::open(dir_.c_str(), O_PATH | O_CLOEXEC));
    auto id_of = file_id(m.fd.get());
    EXPECT_TRUE(id_of);
    m.mnt_id = id_of->mnt_id;
    m.dev = id_of->dev;
    m.dest = "/";
    m.what = "the test directory";
    c->marks.push_back(std::move(m));
    EXPECT_TRUE(registry_.add(c));
    registry_.add_marks(c);
    return c;
  }

  void start(std::uint64_t max_file_bytes = 4096) {
    ExecPipelineOptions o;
    o.threads = 2;
    o.per_container = 1;
    o.max_file_bytes = max_file_bytes;
    o.self = ::getpid();
    o.host_mnt_ns = 1;
    o.host_pid_ns = 2;
    pipeline_ = std::make_unique<ExecPipeline>(o, registry_, *cache_, env_);
    pipeline_->start();
  }

  // Asks as the kernel would and waits for the answer.
  events::Verdict ask(const std::string& name, bool exec, pid_t pid = kAsker) {
    std::promise<events::Verdict> p;
    auto answered = p.get_future();
    pipeline_->ask(std::make_unique<SyntheticQuestion>(dir_ + "/" + name, exec, pid, std::move(p)));
    if (answered.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      ADD_FAILURE() << "no answer for " << name;
      return events::Verdict::kDeny;
    }
    return answered.get();
  }

  static std::vector<LogLine> log_of(const Container& c) {
    std::vector<LogLine> lines;
    auto reader = imalog::BinaryReader::open(c.log_path);
    EXPECT_TRUE(reader) << reader.error().message();
    if (!reader) return lines;
    imalog::Entry e;
    for (;;) {
      auto more = reader->next(e);
      EXPECT_TRUE(more);
      if (!more || !*more) break;
      auto fields = imalog::parse_fields(e);
      EXPECT_TRUE(fields);
      if (fields) lines.push_back({std::string(fields->name), e.is_violation()});
    }
    return lines;
  }
  static int count(const std::vector<LogLine>& log, const std::string& name, bool violation) {
    int n = 0;
    for (const auto& l : log) n += l.name == name && l.violation == violation ? 1 : 0;
    return n;
  }
  ino_t inode(const std::string& name) {
    struct stat st {};
    EXPECT_EQ(::stat((dir_ + "/" + name).c_str(), &st), 0);
    return st.st_ino;
  }
  // What a worker does after it answered (the event, the pinned vouch) is waited for.
  template <typename F>
  static bool eventually(F done) {
    for (int i = 0; i < 1000 && !done(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return done();
  }
  std::vector<json> of_kind(const std::string& kind, std::size_t expect = 0) {
    eventually([&] {
      std::size_t n = 0;
      for (const auto& e : env_.published()) n += e.value("kind", "") == kind ? 1 : 0;
      return n >= expect;
    });
    std::vector<json> out;
    for (const auto& e : env_.published()) {
      if (e.value("kind", "") == kind) out.push_back(e);
    }
    return out;
  }

  std::string dir_;
  std::shared_ptr<LoadedPolicy> policy_;
  std::optional<DigestCache> cache_;
  ContainerRegistry registry_;
  RecordingEnvironment env_;
  std::unique_ptr<ExecPipeline> pipeline_;
  std::vector<tpm::Swtpm> swtpms_;
};

TEST_F(ExecPipelineTest, EnforceRunsTheListedFileVouchedAndLogged) {
  auto c = container("c1", policy::Mode::kEnforce);
  start();
  EXPECT_EQ(ask("listed", true), events::Verdict::kAllow);
  auto log = log_of(*c);
  EXPECT_EQ(count(log, dir_ + "/listed", false), 1);
  // The gate learned it before the answer, then pinned it under the cache's lease.
  ASSERT_TRUE(eventually([&] { return env_.vouches().size() >= 2; }));
  auto v = env_.vouches();
  ASSERT_EQ(v.size(), 2U);
  EXPECT_EQ(v[0].number, c->number);
  EXPECT_EQ(v[0].ino, inode("listed"));
  EXPECT_FALSE(v[0].pinned);
  EXPECT_TRUE(v[1].pinned);
  // Asked again: from the digest cache, not logged twice, still allowed.
  EXPECT_EQ(ask("listed", true), events::Verdict::kAllow);
  EXPECT_EQ(cache_->stats().hits, 1U);
  EXPECT_EQ(count(log_of(*c), dir_ + "/listed", false), 1);
  EXPECT_TRUE(of_kind("denied").empty());
}

TEST_F(ExecPipelineTest, EnforceDeniesAnUnlistedExecAndLibraryLoad) {
  auto c = container("c1", policy::Mode::kEnforce);
  start();
  EXPECT_EQ(ask("unlisted", true), events::Verdict::kDeny);
  EXPECT_EQ(ask("unlisted", false), events::Verdict::kDeny);  // an open of an ELF: a library
  EXPECT_EQ(count(log_of(*c), dir_ + "/unlisted", false), 0) << "it did not run";
  EXPECT_TRUE(env_.vouches().empty());
  auto denied = of_kind("denied", 2);
  ASSERT_EQ(denied.size(), 2U);
  EXPECT_EQ(denied[0]["container"], "c1");
  EXPECT_EQ(denied[0]["path"], dir_ + "/unlisted");
  EXPECT_EQ(denied[0]["exec"], true);
  EXPECT_EQ(denied[1]["exec"], false);
  EXPECT_EQ(denied[0]["judged"], policy::verdict_name(policy::Verdict::kUnknownDigest));
  EXPECT_EQ(denied[0]["pid"], kAsker);
  EXPECT_EQ(std::string(denied[0]["digest"]).rfind("sha256:", 0), 0U);
}

TEST_F(ExecPipelineTest, MeasureRunsAndLogsTheUnlistedFile) {
  auto c = container("c1", policy::Mode::kMeasure);
  start();
  EXPECT_EQ(ask("unlisted", true), events::Verdict::kAllow);
  EXPECT_EQ(count(log_of(*c), dir_ + "/unlisted", false), 1);
  EXPECT_TRUE(eventually([&] { return env_.vouches().size() == 2; }))
      << "what ran in measure is vouched for too";
  EXPECT_TRUE(of_kind("denied").empty());
}

TEST_F(ExecPipelineTest, DataOpensAreAnsweredAtOnceAndNotAskedAgain) {
  auto c = container("c1", policy::Mode::kEnforce);
  start();
  EXPECT_EQ(ask("data.txt", false), events::Verdict::kAllow);
  EXPECT_EQ(env_.ignored, 1) << "an ignore mark for the data file";
  EXPECT_TRUE(log_of(*c).empty());
  EXPECT_TRUE(env_.vouches().empty());
  EXPECT_EQ(cache_->stats().misses, 0U) << "never hashed";
  // An exec of the same data file is judged like any exec (and is not listed).
  EXPECT_EQ(ask("data.txt", true), events::Verdict::kDeny);
}

TEST_F(ExecPipelineTest, AFileTooLargeToHashIsDeniedInEnforceAndAViolationElsewhere) {
  auto enforced = container("c1", policy::Mode::kEnforce);
  start();
  EXPECT_EQ(ask("huge", true), events::Verdict::kDeny);
  auto denied = of_kind("denied", 1);
  ASSERT_EQ(denied.size(), 1U);
  EXPECT_NE(std::string(denied[0]["reason"]).find("max_file_bytes"), std::string::npos);
  pipeline_.reset();
  ASSERT_TRUE(registry_.remove("c1"));
  auto measured = container("c2", policy::Mode::kMeasure);
  start();
  EXPECT_EQ(ask("huge", true), events::Verdict::kAllow);
  EXPECT_EQ(count(log_of(*measured), dir_ + "/huge", true), 1) << "a violation record";
  EXPECT_EQ(of_kind("violation", 1).size(), 1U);
}

TEST_F(ExecPipelineTest, WhatTheGateCannotLearnIsDeniedInEnforce) {
  auto c = container("c1", policy::Mode::kEnforce);
  env_.gate_full = true;
  start();
  EXPECT_EQ(ask("listed", true), events::Verdict::kDeny);
  auto denied = of_kind("denied", 1);
  ASSERT_EQ(denied.size(), 1U);
  EXPECT_NE(std::string(denied[0]["reason"]).find("exec gate"), std::string::npos);
}

TEST_F(ExecPipelineTest, OwnAccessesAndOtherFilesAreAllowedUnjudged) {
  auto c = container("c1", policy::Mode::kEnforce);
  start();
  EXPECT_EQ(ask("unlisted", true, ::getpid()), events::Verdict::kAllow) << "the agent itself";
  EXPECT_EQ(pipeline_->unattributed(), 0U);
  ASSERT_TRUE(registry_.remove("c1"));
  EXPECT_EQ(ask("unlisted", true), events::Verdict::kAllow) << "no container's file";
  EXPECT_EQ(pipeline_->unattributed(), 1U);
  EXPECT_TRUE(log_of(*c).empty());
}

// The gate's report of an unvouched exec (kExec) or mapping (kMap) in container `c`.
events::ObservedEvent gate_report(const Container& c, events::ObservedKind kind) {
  events::ObservedEvent e;
  e.kind = kind;
  e.pid = kAsker;
  e.container = c.number;
  e.unvouched = true;
  return e;
}

TEST_F(ExecPipelineTest, TheGatesKillIsADenialOnRecord) {
  auto c = container("c1", policy::Mode::kEnforce);
  start();
  events::ObservedEvent e = gate_report(*c, events::ObservedKind::kExec);
  e.killed = true;
  e.memfd_name = true;
  e.filename = "/dev/fd/3";
  pipeline_->observed(e);
  EXPECT_EQ(count(log_of(*c), "/dev/fd/3", true), 1);
  auto denied = of_kind("denied", 1);
  ASSERT_EQ(denied.size(), 1U);
  EXPECT_NE(std::string(denied[0]["reason"]).find("memfd"), std::string::npos);
  EXPECT_EQ(pipeline_->unvouched(), 1U);
  // A vouched exec, or another agent's container number, leaves nothing.
  e.unvouched = false;
  pipeline_->observed(e);
  e.unvouched = true;
  e.container = 999;
  pipeline_->observed(e);
  EXPECT_EQ(log_of(*c).size(), 1U);
}

TEST_F(ExecPipelineTest, WhatTheGateSawRunInMeasureIsMeasuredFromTheProcess) {
  auto c = container("c1", policy::Mode::kMeasure);
  start();
  events::ObservedEvent e = gate_report(*c, events::ObservedKind::kMap);
  e.map_syscall = events::MapSyscall::kMprotect;
  e.name = "unlisted";
  env_.running = dir_ + "/unlisted";
  pipeline_->observed(e);
  EXPECT_EQ(count(log_of(*c), dir_ + "/unlisted", false), 1) << "its digest, in the log";
  auto seen = of_kind("unvouched");
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_NE(std::string(seen[0]["reason"]).find("mprotect(PROT_EXEC)"), std::string::npos);
  EXPECT_EQ(env_.vouches().size(), 1U) << "vouched for from now on";
  // Gone before it could be measured: a violation record.
  env_.running.clear();
  e.name = "gone";
  pipeline_->observed(e);
  EXPECT_EQ(count(log_of(*c), "gone", true), 1);
}

TEST_F(ExecPipelineTest, AProcessGoneBeforeItsMeasurementIsMeasuredFromAChildThatMapsIt) {
  // fexecve of a memfd whose program forks and exits at once: the exec's process is gone
  // when the agent reads the report, its child still runs the file.
  auto c = container("c1", policy::Mode::kMeasure);
  start();
  events::ObservedEvent e = gate_report(*c, events::ObservedKind::kExec);
  e.memfd_name = true;
  e.filename = "/dev/fd/4";
  env_.running = dir_ + "/unlisted";
  env_.running_pid = kAsker + 1;
  env_.mappers = {kAsker, kAsker + 1};
  pipeline_->observed(e);
  EXPECT_EQ(count(log_of(*c), dir_ + "/unlisted", false), 1) << "measured, from the child";
  EXPECT_EQ(count(log_of(*c), "/dev/fd/4", true), 0) << "not a mere name";
  auto seen = of_kind("unvouched");
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_NE(std::string(seen[0]["reason"]).find("was gone"), std::string::npos);
  // No process maps it any more: a violation record under the name it had.
  env_.mappers.clear();
  pipeline_->observed(e);
  EXPECT_EQ(count(log_of(*c), "/dev/fd/4", true), 1);
}

TEST_F(ExecPipelineTest, AnLsmReportReadBeforeTheExecCompletesIsMeasuredOnceItHas) {
  // The BPF-LSM gate reports from bprm_check_security, before the process runs the file.
  auto c = container("c1", policy::Mode::kMeasure);
  start();
  events::ObservedEvent e = gate_report(*c, events::ObservedKind::kExec);
  e.lsm = true;
  e.filename = dir_ + "/unlisted";
  env_.running = dir_ + "/unlisted";
  env_.pid_ns = 4026531836;  // the process lives
  env_.not_yet = 3;
  pipeline_->observed(e);
  EXPECT_EQ(count(log_of(*c), dir_ + "/unlisted", false), 1) << "measured";
  // Without the LSM (the exec tracepoint reports after the exec), nothing to wait for.
  e.lsm = false;
  env_.not_yet = 1;
  e.filename = "late";
  pipeline_->observed(e);
  EXPECT_EQ(count(log_of(*c), "late", true), 1);
}

// Discovery held the task before its first instruction (SIGSTOP); the container is
// registered since. What runs is judged from the process; nothing but a signal ends the hold.
events::ObservedEvent held(const Container& c, const std::string& file) {
  events::ObservedEvent e;
  e.kind = events::ObservedKind::kExec;
  e.pid = kAsker;
  e.container = c.number;
  e.held = true;
  e.filename = file;
  return e;
}

TEST_F(ExecPipelineTest, AHeldExecOfAListedFileGoesOnVouchedAndLogged) {
  auto c = container("c1", policy::Mode::kEnforce);
  start();
  env_.running = dir_ + "/listed";
  EXPECT_TRUE(pipeline_->held_exec(c, held(*c, "/listed")));
  EXPECT_EQ(env_.resumed, std::vector<pid_t>{kAsker});
  EXPECT_TRUE(env_.killed.empty());
  EXPECT_EQ(count(log_of(*c), dir_ + "/listed", false), 1);
  ASSERT_EQ(env_.vouches().size(), 1U) << "the gate lets it run again without asking";
  EXPECT_EQ(env_.vouches()[0].number, c->number);
  ASSERT_EQ(of_kind("allowed").size(), 1U);
  // The pipeline's own entry point leaves held records to discovery.
  pipeline_->observed(held(*c, "/listed"));
  EXPECT_EQ(env_.resumed.size(), 1U);
}

TEST_F(ExecPipelineTest, AHeldExecOfAnUnlistedFileIsKilledInEnforceAndGoesOnInMeasure) {
  auto c = container("c1", policy::Mode::kEnforce);
  auto m = container("c2", policy::Mode::kMeasure);
  start();
  env_.running = dir_ + "/unlisted";
  EXPECT_FALSE(pipeline_->held_exec(c, held(*c, "/unlisted")));
  ASSERT_EQ(env_.killed.size(), 1U);
  EXPECT_EQ(env_.killed[0].first, kAsker);
  EXPECT_TRUE(env_.resumed.empty()) << "never let go";
  EXPECT_TRUE(env_.vouches().empty());
  EXPECT_EQ(count(log_of(*c), dir_ + "/unlisted", false), 0) << "it did not run";
  ASSERT_EQ(of_kind("denied").size(), 1U);
  EXPECT_TRUE(pipeline_->held_exec(m, held(*m, "/unlisted")));
  EXPECT_EQ(env_.resumed, std::vector<pid_t>{kAsker});
  EXPECT_EQ(count(log_of(*m), dir_ + "/unlisted", false), 1) << "measured before it ran";
}

TEST_F(ExecPipelineTest, AHeldExecThatCannotBeMeasuredIsKilledInEnforceOnly) {
  auto c = container("c1", policy::Mode::kEnforce);
  auto m = container("c2", policy::Mode::kMeasure);
  start();
  env_.running.clear();  // open_running() fails
  EXPECT_FALSE(pipeline_->held_exec(c, held(*c, "/x")));
  EXPECT_EQ(env_.killed.size(), 1U);
  EXPECT_EQ(count(log_of(*c), "/x", true), 1) << "a violation record";
  EXPECT_TRUE(pipeline_->held_exec(m, held(*m, "/y")));
  EXPECT_EQ(env_.killed.size(), 1U);
  EXPECT_EQ(env_.resumed, std::vector<pid_t>{kAsker});
  EXPECT_EQ(count(log_of(*m), "/y", true), 1);
}

TEST_F(ExecPipelineTest, AHeldScriptIsJudgedBesideItsInterpreter) {
  auto c = container("c1", policy::Mode::kEnforce);
  start();
  env_.running = dir_ + "/listed";  // the interpreter
  env_.named = dir_ + "/unlisted";  // the script the exec named
  EXPECT_FALSE(pipeline_->held_exec(c, held(*c, "/entry.sh")));
  EXPECT_EQ(env_.killed.size(), 1U);
  EXPECT_TRUE(env_.resumed.empty());
  auto denied = of_kind("denied");
  ASSERT_EQ(denied.size(), 1U);
  EXPECT_EQ(denied[0]["path"], "/entry.sh");
  // A listed script with a listed interpreter: both measured, the script first.
  write(dir_ + "/listed2", std::string("\x7f") + "ELF listed program");  // another inode
  env_.named = dir_ + "/listed2";
  EXPECT_TRUE(pipeline_->held_exec(c, held(*c, "/entry.sh")));
  EXPECT_EQ(env_.resumed, std::vector<pid_t>{kAsker});
  auto log = log_of(*c);
  ASSERT_GE(log.size(), 2U);
  EXPECT_EQ(log[log.size() - 2].name, "/entry.sh");
  EXPECT_EQ(log.back().name, dir_ + "/listed");
  // A name that leads nowhere: what the interpreter reads cannot be judged.
  env_.named = dir_ + "/gone";
  EXPECT_FALSE(pipeline_->held_exec(c, held(*c, "/dev/fd/3")));
  EXPECT_EQ(env_.killed.size(), 2U);
}

TEST_F(ExecPipelineTest, LostEventsAreAViolationInEveryContainer) {
  auto a = container("a", policy::Mode::kEnforce);
  auto b = container("b", policy::Mode::kMeasure);
  start();
  pipeline_->violation_everywhere("ctrust:fanotify-overflow", "the queue overflowed");
  EXPECT_EQ(count(log_of(*a), "ctrust:fanotify-overflow", true), 1);
  EXPECT_EQ(count(log_of(*b), "ctrust:fanotify-overflow", true), 1);
  EXPECT_EQ(of_kind("violation").size(), 2U);
}

TEST_F(ExecPipelineTest, AnUngatedContainersUnwatchedExecIsKilledInEnforce) {
  auto c = container("c1", policy::Mode::kEnforce, /*gated=*/false);
  start();
  events::ObservedEvent e;
  e.kind = events::ObservedKind::kExec;
  e.pid = kAsker;
  e.mnt_ns = c->mnt_ns;
  e.mnt_id = 0xfffff;  // no mark
  e.filename = "/mnt/new/payload";
  pipeline_->observed(e);
  ASSERT_EQ(env_.killed.size(), 1U);
  EXPECT_EQ(env_.killed[0], std::make_pair(kAsker, c->mnt_ns)) << "only if still in it";
  EXPECT_EQ(count(log_of(*c), "/mnt/new/payload", true), 1);
  // Through the container's marked mount fanotify asked already: nothing to do.
  e.mnt_id = static_cast<std::uint32_t>(c->marks[0].mnt_id);
  e.dev = c->marks[0].dev;
  pipeline_->observed(e);
  EXPECT_EQ(env_.killed.size(), 1U);
  EXPECT_EQ(log_of(*c).size(), 1U);
}

TEST_F(ExecPipelineTest, AnUnmanagedContainerIsReportedOnce) {
  start();
  env_.pid_ns = 77;  // a pid namespace of its own
  events::ObservedEvent e;
  e.kind = events::ObservedKind::kExec;
  e.pid = kAsker;
  e.mnt_ns = 555;
  e.filename = "/bin/sh";
  pipeline_->observed(e);
  pipeline_->observed(e);
  EXPECT_EQ(of_kind("unmanaged").size(), 1U);
  env_.pid_ns = 2;  // the host's pid namespace: a host process, not a container
  e.mnt_ns = 556;
  pipeline_->observed(e);
  EXPECT_EQ(of_kind("unmanaged").size(), 1U);
}

TEST_F(ExecPipelineTest, CodeWrittenWhileMappedEndsItsMappersInEnforce) {
  auto c = container("c1", policy::Mode::kEnforce);
  start();
  env_.mappers = {4343, 4344};
  UniqueFd fd(::open((dir_ + "/listed").c_str(), O_RDONLY | O_CLOEXEC));
  pipeline_->written_while_cached(FileKey{c->number, 0, 0}, {fd.get()});
  EXPECT_EQ(env_.killed.size(), 2U);
  EXPECT_EQ(count(log_of(*c), dir_ + "/listed", true), 1);
  ASSERT_EQ(of_kind("denied").size(), 1U);
  // Nobody maps it: nothing happens.
  env_.mappers.clear();
  pipeline_->written_while_cached(FileKey{c->number, 0, 0}, {fd.get()});
  EXPECT_EQ(log_of(*c).size(), 1U);
}

// No lease to break (a writer had the file when it was asked, or a lease broke moments
// ago and none was taken again): the open itself, which may be the writer's, ends the
// processes that map the file executable before it is answered.
TEST_F(ExecPipelineTest, AnOpenOfCodeThatIsOpenForWritingEndsItsMappers) {
  auto c = container("c1", policy::Mode::kEnforce);
  start();
  env_.mappers = {4343};
  UniqueFd writer(::open((dir_ + "/listed").c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(writer);
  EXPECT_EQ(ask("listed", false), events::Verdict::kAllow);
  EXPECT_EQ(env_.killed.size(), 1U);
  EXPECT_EQ(count(log_of(*c), dir_ + "/listed", true), 1);
  ASSERT_EQ(of_kind("denied").size(), 1U);
  // Without a writer nobody is looked for.
  writer.reset();
  env_.killed.clear();
  EXPECT_EQ(ask("listed", false), events::Verdict::kAllow);
  EXPECT_TRUE(env_.killed.empty());
}

TEST_F(ExecPipelineTest, CodeWrittenWhileMappedIsAViolationInMeasure) {
  auto c = container("c1", policy::Mode::kMeasure);
  start();
  env_.mappers = {4343};
  UniqueFd fd(::open((dir_ + "/listed").c_str(), O_RDONLY | O_CLOEXEC));
  pipeline_->written_while_cached(FileKey{c->number, 0, 0}, {fd.get()});
  EXPECT_TRUE(env_.killed.empty());
  EXPECT_EQ(count(log_of(*c), dir_ + "/listed", true), 1);
  EXPECT_EQ(of_kind("violation").size(), 1U);
}

}  // namespace
}  // namespace ctrust::agent
