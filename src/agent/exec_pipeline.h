// The exec decision of the node agent, whole: every question the kernel asks about a
// container's file, every report of the exec gate and of the exec observer, every lost
// event, ends here in a verdict, a log entry or a violation record, and an event for
// `ctrust events` (docs/EXEC_PATH.md).
//
// It sees the kernel only through a seam, so that a test can feed it synthetic events
// (tests/agent/exec_pipeline_test.cpp, no root needed):
//   in   Question         one fanotify permission event (FanotifyQuestion wraps the real
//                         one); ask() takes it.
//        ObservedEvent    a BPF record (events/bpf_observer.h, plain data); observed().
//        written_while_cached(), violation_everywhere(): the digest cache's lease breaks,
//                         a fanotify queue overflow, lost BPF records.
//   out  ExecEnvironment  what the decision acts on: the exec gate's verdict map, the
//                         fanotify group's ignore marks, signals to processes, /proc, and
//                         the event subscribers. ProcEnvironment is /proc's part of it.
// The containers come from a ContainerRegistry, the digests of files met before from a
// DigestCache: both real in tests too (neither needs root).
//
// Flow of a question: ask() runs on the fanotify thread, attributes the file to a
// container, answers at once what needs no hash (not a container's file, mode off, a data
// file), takes the digest cache's lease, and queues the rest; the hashing workers (fair
// between containers) measure, judge (ExecGuard: policy, log, vTPM), tell the gate, then
// answer. The fanotify thread never blocks on a TPM or a disk.
//
// Thread safety: ask() from one thread (the fanotify thread); everything else from any.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/container.h"
#include "agent/digest_cache.h"
#include "agent/fair_queue.h"
#include "agent/registry.h"
#include "events/bpf_observer.h"
#include "events/fanotify.h"
#include "util/result.h"
#include "util/unique_handle.h"

namespace ctrust::agent {

// One question from the kernel: may this process execute, or open, this file?
class Question {
 public:
  virtual ~Question() = default;
  virtual const events::PermissionEvent& event() const = 0;
  // Tells the kernel (once). A question destroyed unanswered gets the fail verdict.
  virtual Result<void> answer(events::Verdict verdict) = 0;
  // The file, kept open after the answer (the digest cache holds its lease on it).
  virtual UniqueFd take_fd() = 0;
};

// A fanotify permission event as a Question.
class FanotifyQuestion final : public Question {
 public:
  explicit FanotifyQuestion(events::PendingEvent event) : event_(std::move(event)) {}
  const events::PermissionEvent& event() const override { return event_.event(); }
  Result<void> answer(events::Verdict verdict) override { return event_.answer(verdict); }
  UniqueFd take_fd() override { return event_.take_fd(); }

 private:
  events::PendingEvent event_;
};

// The file behind an exec or executable mapping the gate reported, opened again through
// the process, with the path it has there.
struct RunningFile {
  UniqueFd fd;
  std::string path;
};

// What the exec decision acts on outside itself.
class ExecEnvironment {
 public:
  virtual ~ExecEnvironment() = default;
  // One line for the `ctrust events` subscribers.
  virtual void publish(const nlohmann::json& event) = 0;
  // The exec gate may let container `number` run (dev, ino) while its ctime is `ctime`
  // (any ctime when `pinned`: the digest cache holds a lease on the content).
  virtual Result<void> vouch(std::uint64_t number, dev_t dev, ino_t ino,
                             const struct timespec& ctime, bool pinned) = 0;
  // Opens of this data file are not asked about again (an evictable ignore mark).
  virtual Result<void> ignore_data_opens(int fd) = 0;
  // SIGKILL to `pid`, through a pidfd, and only if it is still in mount namespace `mnt_ns`
  // (0: wherever it is), so that a recycled pid never gets it.
  virtual void kill(pid_t pid, ino_t mnt_ns) = 0;
  // SIGCONT to `pid` (a task discovery stopped), through a pidfd.
  virtual void resume(pid_t pid) = 0;
  // The file process `e.pid` runs (kExec) or maps (kMap), opened through /proc.
  virtual Result<RunningFile> open_running(const events::ObservedEvent& e) = 0;
  // The file `e.filename` names as process `e.pid` resolves it (an absolute name in its
  // root, a relative one in its working directory; symlinks stay inside, no magic links):
  // for an exec discovery held, the script the kernel handed to the interpreter the
  // process runs. kNotFound when it cannot be resolved.
  virtual Result<RunningFile> open_named(const events::ObservedEvent& e) = 0;
  // The processes in cgroup directory `cgroup` (and below) that map one of `files`
  // (device, inode) executable.
  virtual std::vector<pid_t> mapping_executable(
      const std::string& cgroup, const std::vector<std::pair<dev_t, ino_t>>& files) = 0;
  // The inode of process `pid`'s pid namespace (0: gone).
  virtual ino_t pid_namespace(pid_t pid) = 0;
};

// The parts of ExecEnvironment that are plain /proc and signals.
class ProcEnvironment : public ExecEnvironment {
 public:
  void kill(pid_t pid, ino_t mnt_ns) override;
  void resume(pid_t pid) override;
  Result<RunningFile> open_running(const events::ObservedEvent& e) override;
  Result<RunningFile> open_named(const events::ObservedEvent& e) override;
  std::vector<pid_t> mapping_executable(const std::string& cgroup,
                                        const std::vector<std::pair<dev_t, ino_t>>& files) override;
  ino_t pid_namespace(pid_t pid) override;
};

struct ExecPipelineOptions {
  unsigned threads = 2;        // hashing workers
  unsigned per_container = 1;  // at most this many of them on one container's files
  std::uint64_t max_file_bytes = std::uint64_t{1} << 30;  // larger: not hashed
  // In enforce, end a process of an ungated container that ran a file fanotify never asked
  // about (the exec observer saw it).
  bool kill_unvouched = true;
  pid_t self = 0;         // the agent's own pid: its accesses are never judged
  ino_t host_mnt_ns = 0;  // the agent's mount and pid namespaces: not a container's
  ino_t host_pid_ns = 0;
};

class ExecPipeline {
 public:
  ExecPipeline(ExecPipelineOptions options, ContainerRegistry& containers, DigestCache& cache,
               ExecEnvironment& environment);
  ~ExecPipeline();
  ExecPipeline(const ExecPipeline&) = delete;
  ExecPipeline& operator=(const ExecPipeline&) = delete;

  // Starts the hashing workers.
  void start();
  // Joins the workers; questions still queued stay queued until clear().
  void stop();
  // Drops queued questions: each is answered with the fail verdict as it goes.
  void clear();

  // A permission event (on the fanotify thread).
  void ask(std::unique_ptr<Question> question);
  // A record of the BPF programs: an exec, or the exec gate's report.
  void observed(const events::ObservedEvent& e);
  // An exec discovery held (e.held: the task is stopped before its first instruction) in
  // container `c`, registered since: the file is measured from the process and judged; the
  // task goes on (SIGCONT) where the container's mode lets it run the file, and is killed
  // otherwise (enforce: not allowed, or not measurable). Returns whether it went on.
  bool held_exec(const std::shared_ptr<Container>& c, const events::ObservedEvent& e);
  // A writer is about to open a file the digest cache holds for container `key.owner` (its
  // lease broke; the writer waits): processes of the container that map it executable
  // would run the new bytes, so they are ended (enforce) or the log says so (elsewhere).
  void written_while_cached(const FileKey& key, const std::vector<int>& fds);
  // A violation record named `name` in every running container's log (mode off aside),
  // and an event for each: something may have run in any of them unjudged.
  void violation_everywhere(const std::string& name, const std::string& reason);
  // Tells the gate that container `c` may run `key` (as of `ctime`); false when it cannot.
  bool vouch(const Container& c, const FileKey& key, const struct timespec& ctime,
             bool pinned = false);

  std::uint64_t unvouched() const { return unvouched_.load(); }
  std::uint64_t unattributed() const { return unattributed_.load(); }

 private:
  struct Job {
    std::shared_ptr<Container> container;
    std::unique_ptr<Question> question;
    FileKey key;
    std::uint64_t mnt_id = 0;
    std::optional<crypto::Digest> cached;  // from the digest cache
    bool leased = false;                   // a lease was taken (begin()); finish() it
    bool writers = false;                  // the file had a writer when asked
    struct timespec ctime {};              // the inode's ctime when asked (the gate's check)
    std::uint64_t size = 0;                // the file's size when asked
  };
  void worker_loop();
  void process(Job job);
  void gate_report(const std::shared_ptr<Container>& c, const events::ObservedEvent& e);
  void unwatched_exec(const events::ObservedEvent& e);
  void violation(const Container& c, const std::string& name);
  // The processes of `c` that map one of `fds`' files executable: ended in enforce, a
  // violation record and an event in every mode but off.
  void end_mappers(Container& c, const std::vector<int>& fds);
  // The real upper file of `path` on an overlay mark (what a writer's bytes reach).
  static Result<UniqueFd> upper_file(const Container& c, const Mark* mark, const std::string& path);

  ExecPipelineOptions options_;
  ContainerRegistry& containers_;
  DigestCache& cache_;
  ExecEnvironment& env_;
  FairQueue<Job> jobs_;
  std::vector<std::thread> workers_;
  std::atomic<std::uint64_t> unvouched_{0};
  std::atomic<std::uint64_t> unattributed_{0};
  std::mutex unmanaged_mutex_;
  std::set<ino_t> alerted_;  // mount namespaces already reported as unmanaged
};

}  // namespace ctrust::agent
