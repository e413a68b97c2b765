// ctrustd, the node agent: gives every container its own vTPM and IMA-format measurement
// log, judges every executable, shared object and script the container runs against the
// container's signed policy in the kernel's exec path (fanotify permission events), and
// keeps the host log, extended into a host TPM PCR, of itself and of every container.
//
// Life of a container (docs/AGENT.md):
//   create  (OCI hook createRuntime, before the container's first instruction): parse the
//           runtime state and config.json; image digest of the root filesystem; choose
//           the policy (annotation, image digest, configuration) and the mode; refuse in
//           enforce when either check fails; vTPM from the pool; container log opened with
//           boot_aggregate (host PCRs 0-9), the image digest and the policy digest; a
//           container-created record in the host log; fanotify marks on every mount the
//           container can execute from (root, tmpfs, volumes), seen through the
//           container's own mount namespace.
//   events  each permission event is attributed to a container by the mount it came
//           through (or, for filesystem marks, by the process's mount namespace), then
//           judged on a pool of hashing threads; the fanotify thread itself never blocks
//           on a TPM or a disk, so the agent never waits on its own file accesses.
//   delete  (poststop): a container-stopped host record, vTPM destroyed (state archived
//           by default), the log kept under STATE/containers/ID.
//
// On disk, under state_dir (0700): host/ (host log; host-tpm/ for the embedded swtpm),
// vtpm/ (the vTPM manager's root), containers/ID/ (container.json, measurements.bin),
// policies/ (loaded policies).
//
// Sources: agent_impl.h says which file holds which section; the exec decision is
// ExecPipeline (exec_pipeline.h), the containers' registry ContainerRegistry (registry.h).
//
// Thread safety: handle() may be called from any thread; the agent runs a fanotify thread,
// `hash_threads` workers and one thread per control connection.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <memory>
#include <string>

#include "agent/config.h"
#include "util/result.h"

namespace ctrust::agent {

class Agent {
 public:
  // Everything is set up, or nothing is left running. `config_bytes` is the configuration
  // file as read (measured into the host log); `config_path` is for messages.
  static Result<std::unique_ptr<Agent>> start(const AgentConfig& config,
                                              const std::string& config_bytes);
  virtual ~Agent() = default;

  // Serves the control socket until stop() (from a signal handler thread or another).
  virtual Result<void> serve() = 0;
  virtual void stop() = 0;

  // One control request (what the socket does for each connection, but events).
  virtual nlohmann::json handle(const nlohmann::json& request) = 0;
};

}  // namespace ctrust::agent
