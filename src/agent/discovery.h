// Containers found without a hook (docs/AGENT.md, "Containers found without a hook"): the
// exec gate holds (SIGSTOP, before the first instruction) the first exec in a new cgroup
// below a discovery root, the agent finds which runtime's container it is from the
// runtime's own state files, registers it as a hook would have, and lets the task go on.
// This part is the reading of those state files; the rest is in discovery.cpp
// (AgentImpl::discovery_loop).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace ctrust::agent {

// What a runtime's state file says about one of its containers.
struct RuntimeState {
  std::string id;      // the state directory's name
  pid_t pid = 0;       // the container's first process
  std::string bundle;  // absolute path of the OCI bundle
  // When that process started (clock ticks since boot, /proc/PID/stat's field 22), where
  // the runtime records it: a state file of a container long gone whose pid has been
  // reused names another process, and is told apart by this.
  std::optional<std::uint64_t> start_time;
};

// Field 22 of the text of /proc/PID/stat (the process's start time in clock ticks), read
// after the last ')' so that a command name cannot shift the fields.
std::optional<std::uint64_t> parse_proc_stat_start_time(std::string_view text);

// Parses ROOT/ID/state.json as runc writes it ("init_process_pid", "init_process_start", and
// the bundle as the "bundle=PATH" label in "config.labels") or ROOT/ID/status as crun writes
// it ("pid", "process-start-time", "bundle"). `file` says which ("state.json" or "status"). The
// text is the runtime's, not the container's; still it is checked like untrusted input (fuzz_oci).
Result<RuntimeState> parse_runtime_state(std::string_view id, std::string_view file,
                                         std::string_view text);

// The container of `roots` (runtime state directories such as /run/runc) whose first
// process is `pid`, or whose first process is in the cgroup v2 directory with inode
// `cgroup_id` (a later process of the container), and, where the state records when that
// process started, started then. Not found: Errc::kNotFound.
Result<RuntimeState> find_runtime_state(const std::vector<std::string>& roots, pid_t pid,
                                        std::uint64_t cgroup_id);

}  // namespace ctrust::agent
