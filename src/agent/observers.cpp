#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <poll.h>
#include <sys/socket.h>
#include "agent/agent_impl.h"

#include "util/file.h"
#include "util/text.h"

namespace ctrust::agent {

namespace fs = std::filesystem;
using nlohmann::json;

// --- events -------------------------------------------------------------------------------

void AgentImpl::fanotify_loop() {
  std::uint64_t overflows_seen = 0;
  pollfd fds[3] = {{monitor_->fd(), POLLIN, 0}, {cache_->signal_fd(), POLLIN, 0}, {-1, 0, 0}};
  while (!stopping_) {
    fds[2] = {wake_.get(), POLLIN, 0};
    int ready = ::poll(fds, 3, 500);
    if (ready <= 0) continue;
    if ((fds[1].revents & POLLIN) != 0) cache_->drain();
    if ((fds[0].revents & POLLIN) != 0) {
      auto n = monitor_->poll_dispatch(
          [this](events::PendingEvent e) {
            exec_->ask(std::make_unique<FanotifyQuestion>(std::move(e)));
          },
          0);
      if (!n) spdlog::error("fanotify: {}", n.error().message());
      if (monitor_->overflows() != overflows_seen) {
        overflows_seen = monitor_->overflows();
        queue_overflowed();
      }
    }
  }
}

// The kernel lost fanotify events: whatever they asked about ran unasked, in any container.
// Every running container's log says so (the exec gate still killed, in enforce, whatever
// of it was an exec or executable mapping of a file nobody vouched for).
void AgentImpl::queue_overflowed() {
  spdlog::error("fanotify: the event queue overflowed; a violation is recorded in every container");
  exec_->violation_everywhere("ctrust:fanotify-overflow",
                              "the fanotify queue overflowed: opens and execs went unasked");
}

void AgentImpl::publish(const json& event) {
  std::string line = event.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::lock_guard lock(subscribers_mutex_);
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    // Non-blocking: a subscriber that does not keep up is dropped, never waited for.
    ssize_t n = ::send(it->get(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n != static_cast<ssize_t>(line.size())) {
      it = subscribers_.erase(it);
    } else {
      ++it;
    }
  }
}

Result<void> AgentImpl::vouch(std::uint64_t number, dev_t dev, ino_t ino,
                              const struct timespec& ctime, bool pinned) {
#ifdef CTRUST_WITH_BPF
  if (bpf_) return bpf_->gate_allow(number, dev, ino, ctime, pinned);
#else
  (void)number;
  (void)dev;
  (void)ino;
  (void)ctime;
  (void)pinned;
#endif
  return Error(Errc::kUnsupported, "no exec gate (the BPF programs are not loaded)");
}

Result<void> AgentImpl::ignore_data_opens(int fd) { return monitor_->ignore_data_opens(fd); }

// --- the BPF observers --------------------------------------------------------------------

void AgentImpl::bpf_loop() {
#ifdef CTRUST_WITH_BPF
  std::uint64_t reported_lost = 0;
  while (!stopping_) {
    auto n = bpf_->poll(500, [this](const events::ObservedEvent& e) {
      if (e.held) {
        held(e);
      } else {
        exec_->observed(e);
      }
    });
    if (!n) spdlog::error("BPF observers: {}", n.error().message());
    std::uint64_t lost = bpf_->lost();
    if (lost != reported_lost) {
      // Records the kernel could not queue: execs and gate reports we cannot account for. In
      // enforce the gate killed what it reported regardless; in every mode the logs say that
      // something may have run unmeasured.
      spdlog::error("BPF observers: {} records lost (ring buffer full)", lost - reported_lost);
      publish({{"time", now_seconds()}, {"kind", "lost"}, {"records", lost - reported_lost}});
      reported_lost = lost;
      exec_->violation_everywhere("ctrust:bpf-records-lost",
                                  "BPF records were lost: an exec or a gate report may be missing");
    }
  }
#endif
}

// Processes in a pid and mount namespace of their own whose mount namespace is not a
// registered container's: containers started without the hook or while the agent was down.
json AgentImpl::unmanaged() {
  std::map<ino_t, json> found;
  std::set<ino_t> known = containers_.mount_namespaces();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat mnt {};
    struct stat pid {};
    if (::stat((entry.path() / "ns/mnt").c_str(), &mnt) != 0) continue;
    if (::stat((entry.path() / "ns/pid").c_str(), &pid) != 0) continue;
    if (mnt.st_ino == host_mnt_ns_ || pid.st_ino == host_pid_ns_ || known.contains(mnt.st_ino)) {
      continue;
    }
    int p = std::stoi(name);
    auto it = found.find(mnt.st_ino);
    if (it != found.end()) {
      it->second["processes"] = it->second["processes"].get<int>() + 1;
      if (p < it->second["pid"].get<int>()) it->second["pid"] = p;
      continue;
    }
    std::string comm;
    if (auto bytes = read_file(entry.path().string() + "/comm", 64); bytes) {
      comm.assign(bytes->begin(), bytes->end());
      while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    }
    found[mnt.st_ino] = {{"id", "mntns:" + std::to_string(mnt.st_ino)},
                         {"pid", p},
                         {"mnt_ns", mnt.st_ino},
                         {"comm", printable(comm)},
                         {"processes", 1}};
  }
  json list = json::array();
  for (auto& [ns, j] : found) list.push_back(std::move(j));
  return list;
}

}  // namespace ctrust::agent
