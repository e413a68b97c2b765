#include "agent/discovery.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <charconv>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/agent_impl.h"
#include "agent/cgroup.h"
#include "util/file.h"
#include "util/text.h"

namespace ctrust::agent {

namespace fs = std::filesystem;
using nlohmann::json;

Result<RuntimeState> parse_runtime_state(std::string_view id, std::string_view file,
                                         std::string_view text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Error(Errc::kFormat,
                 std::string(file) + " of " + printable(std::string(id)) + " is not a JSON object");
  }
  RuntimeState s;
  s.id = std::string(id);
  const char* pid_key = file == "state.json" ? "init_process_pid" : "pid";
  auto pid = doc.find(pid_key);
  if (pid == doc.end() || !pid->is_number_integer() || pid->get<std::int64_t>() <= 0 ||
      pid->get<std::int64_t>() > std::numeric_limits<pid_t>::max()) {
    return Error(Errc::kFormat, std::string(file) + " of " + printable(std::string(id)) +
                                    " has no usable \"" + pid_key + "\"");
  }
  s.pid = static_cast<pid_t>(pid->get<std::int64_t>());
  auto start = doc.find(file == "state.json" ? "init_process_start" : "process-start-time");
  if (start != doc.end()) {
    if (!start->is_number_unsigned()) {
      return Error(Errc::kFormat, std::string(file) + " of " + printable(std::string(id)) +
                                      " has a start time that is not a number");
    }
    s.start_time = start->get<std::uint64_t>();
  }
  if (file == "state.json") {
    auto config = doc.find("config");
    if (config != doc.end() && config->is_object()) {
      auto labels = config->find("labels");
      if (labels != config->end() && labels->is_array()) {
        for (const auto& l : *labels) {
          if (l.is_string() && l.get<std::string>().starts_with("bundle=")) {
            s.bundle = l.get<std::string>().substr(7);
          }
        }
      }
    }
  } else {
    auto bundle = doc.find("bundle");
    if (bundle != doc.end() && bundle->is_string()) s.bundle = bundle->get<std::string>();
  }
  if (s.bundle.empty() || s.bundle[0] != '/') {
    return Error(Errc::kFormat, std::string(file) + " of " + printable(std::string(id)) +
                                    " names no absolute bundle path");
  }
  return s;
}

std::optional<std::uint64_t> parse_proc_stat_start_time(std::string_view text) {
  auto paren = text.rfind(')');
  if (paren == std::string_view::npos) return std::nullopt;
  // After ") ": field 3 (state) onwards; the start time is field 22, the 20th from there.
  std::string_view rest = text.substr(paren + 1);
  for (int field = 3; field <= 22; ++field) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    auto end = rest.find(' ');
    std::string_view value = rest.substr(0, end);
    if (value.empty()) return std::nullopt;
    if (field == 22) {
      std::uint64_t n = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || p != value.data() + value.size()) return std::nullopt;
      return n;
    }
    if (end == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(end);
  }
  return std::nullopt;
}

namespace {

// When process `pid` started (nullopt: gone or unreadable).
std::optional<std::uint64_t> start_time_of(pid_t pid) {
  auto text = read_file("/proc/" + std::to_string(pid) + "/stat", 4096);
  if (!text) return std::nullopt;
  return parse_proc_stat_start_time(
      std::string_view(reinterpret_cast<const char*>(text->data()), text->size()));
}

// The inode of process `pid`'s cgroup v2 directory (0: unknown).
std::uint64_t cgroup_of(pid_t pid) {
  auto text = read_file("/proc/" + std::to_string(pid) + "/cgroup", std::size_t{64} << 10);
  if (!text) return 0;
  auto path = parse_proc_cgroup_v2(
      std::string_view(reinterpret_cast<const char*>(text->data()), text->size()));
  auto mount = cgroup2_mount();
  if (!path || !mount) return 0;
  struct stat st {};
  if (::stat((*mount + *path).c_str(), &st) != 0) return 0;
  return st.st_ino;
}

}  // namespace

Result<RuntimeState> find_runtime_state(const std::vector<std::string>& roots, pid_t pid,
                                        std::uint64_t cgroup_id) {
  std::vector<std::string> problems;
  for (const auto& root : roots) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
      std::string id = entry.path().filename().string();
      for (const char* file : {"state.json", "status"}) {
        auto bytes = read_file(entry.path().string() + "/" + file, 4u << 20);
        if (!bytes) continue;
        auto s = parse_runtime_state(
            id, file,
            std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
        if (!s) {
          problems.push_back(s.error().message());
          continue;
        }
        if (s->pid != pid && (cgroup_id == 0 || cgroup_of(s->pid) != cgroup_id)) continue;
        // A stale state file whose pid names another process now.
        if (s->start_time && start_time_of(s->pid) != s->start_time) continue;
        return *s;
      }
    }
  }
  std::string why = "no container of the runtimes under containers.runtime_roots has process " +
                    std::to_string(pid) + " or its cgroup";
  if (!problems.empty()) why += " (unreadable: " + problems.front() + ")";
  return Error(Errc::kNotFound, why);
}

// --- AgentImpl: the discovery thread -------------------------------------------------------

void AgentImpl::held(const events::ObservedEvent& e) {
  {
    std::lock_guard lock(held_mutex_);
    held_.push_back(e);
  }
  held_cv_.notify_one();
}

void AgentImpl::discovery_loop() {
  while (true) {
    events::ObservedEvent e;
    {
      std::unique_lock lock(held_mutex_);
      held_cv_.wait(lock, [&] { return stopping_ || !held_.empty(); });
      if (held_.empty()) return;  // stopping
      e = held_.front();
      held_.pop_front();
    }
    discover(e);
  }
}

void AgentImpl::discover(const events::ObservedEvent& e) {
  auto t0 = std::chrono::steady_clock::now();
  // Registered meanwhile (an earlier exec of the same container, or its hook)?
  std::shared_ptr<Container> c = containers_.gated_on(e.cgroup_id, nullptr);
  bool registered_now = false;
  std::string why;
  if (!c) {
    // The runtime's state: written at its create, so there before the container's first
    // program; asked again for a moment in case a runtime writes it late.
    Result<RuntimeState> state = Error(Errc::kNotFound, "not asked");
    for (int i = 0; i < 20; ++i) {
      state = find_runtime_state(config_.runtime_roots, e.pid, e.cgroup_id);
      if (state || stopping_) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!state) {
      why = state.error().message();
      if (config_.discover_unknown == "admit") {
        spdlog::warn(
            "discovery: pid {} ({}) in cgroup {}: {}; admitted unmeasured "
            "(containers.discover_unknown = \"admit\")",
            e.pid, printable(e.filename, 256), e.cgroup_id, why);
        if (bpf_) (void)bpf_->discover_skip(e.cgroup_id);
        ++discover_admitted_;
        publish({{"time", now_seconds()},
                 {"kind", "unmanaged"},
                 {"pid", e.pid},
                 {"path", e.filename},
                 {"reason", "found by discovery, " + why + "; admitted unmeasured"}});
        resume(e.pid);
        return;
      }
    } else {
      json oci = {{"ociVersion", "1.0.2"},
                  {"id", state->id},
                  {"status", "created"},
                  {"pid", state->pid},
                  {"bundle", state->bundle}};
      json request = {{"state", oci.dump()}, {"after_create", true}};
      auto created = create(request, true);
      if (created) {
        registered_now = true;
        ++discovered_;
        c = containers_.find(state->id);
      } else {
        why = "registering container " + state->id + ": " + created.error().message();
      }
    }
  }
  if (c && c->cgroup_v2.id != e.cgroup_id && containers_.gated_on(e.cgroup_id, nullptr) != c) {
    why = "container " + c->id + " is registered on another cgroup";
    c.reset();
  }
  if (!c) {
    // Fail closed: a held task nothing vouches for never runs its first instruction.
    spdlog::error("discovery: pid {} ({}): {}; killed before its first instruction", e.pid,
                  printable(e.filename, 256), why);
    publish({{"time", now_seconds()},
             {"kind", "refused"},
             {"pid", e.pid},
             {"path", e.filename},
             {"reason", "found by discovery, " + why}});
    kill(e.pid, 0);
    ++discover_refused_;
    return;
  }
  events::ObservedEvent judged = e;
  judged.container = c->number;
  auto t_judge = std::chrono::steady_clock::now();
  bool went_on = exec_->held_exec(c, judged);
  auto t_end = std::chrono::steady_clock::now();
  struct timespec boot {};
  ::clock_gettime(CLOCK_BOOTTIME, &boot);
  double since_exec = (static_cast<double>(boot.tv_sec) * 1e9 + static_cast<double>(boot.tv_nsec) -
                       static_cast<double>(e.ktime_ns)) /
                      1e6;
  // The task goes on (or is gone): now the start's extends, sync and host record.
  (void)settle_start(*c);
  using ms = std::chrono::duration<double, std::milli>;
  spdlog::debug(
      "{}: discovery: pid {} held {:.2f} ms ({}{}; {:.2f} ms since the exec; finding and "
      "registering {:.2f} ms, judging {:.2f} ms; settled {:.2f} ms after)",
      c->id, e.pid, ms(t_end - t0).count(), registered_now ? "registered, " : "",
      went_on ? "went on" : "killed", since_exec, ms(t_judge - t0).count(),
      ms(t_end - t_judge).count(), ms(std::chrono::steady_clock::now() - t_end).count());
}

}  // namespace ctrust::agent
