#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "agent/agent_impl.h"
#include "imalog/entry.h"
#include "util/file.h"

namespace ctrust::agent {

namespace fs = std::filesystem;
using nlohmann::json;

Result<void> AgentImpl::open_host_tpm() {
  std::string tcti = config_.host_tcti;
  if (tcti == "embedded") {
    std::string dir = config_.host_dir() + "/host-tpm";
    CTRUST_TRY(make_dir(dir));
    std::string socket = dir + "/tpm.sock";
    auto pid = tpm::read_pid_file(dir + "/swtpm.pid");
    if (!pid || !tpm::swtpm_alive(*pid, socket)) {
      tpm::SwtpmOptions options;
      options.state_dir = dir;
      options.socket = socket;
      options.detached = true;  // outlives an agent restart, as a hardware TPM would
      CTRUST_ASSIGN_OR_RETURN(host_swtpm_, tpm::Swtpm::start(options));
      spdlog::info("host TPM: embedded swtpm started (pid {}); no hardware root of trust",
                   host_swtpm_.pid());
    } else {
      spdlog::info("host TPM: embedded swtpm adopted (pid {})", *pid);
    }
    tcti = "swtpm:path=" + socket;
  }
  CTRUST_ASSIGN_OR_RETURN(tpm::Tpm host, tpm::Tpm::open(tcti));
  host_tpm_aggregate_ = std::make_unique<tpm::Tpm>(std::move(host));
  // The boot aggregate of every container's log: the host's PCRs 0-9, which firmware and
  // boot loader extend before the kernel runs. Read once, as the kernel's IMA reads them once
  // at its start; a verifier compares it with the PCRs it quotes, so a host whose PCRs 0-9
  // moved after the agent started is noticed there, not hidden.
  CTRUST_ASSIGN_OR_RETURN(boot_aggregate_,
                          boot_aggregate(*host_tpm_aggregate_, crypto::HashAlg::kSha256));
  return ok_result();
}

Result<void> AgentImpl::open_host_log() {
  CTRUST_TRY(make_dir(config_.host_dir()));
  std::string path = config_.host_dir() + "/measurements.bin";
  std::string tcti = host_tpm_aggregate_->tcti();
  CTRUST_ASSIGN_OR_RETURN(tpm::Tpm tpm, tpm::Tpm::open(tcti));
  auto log = ContainerLog::open(path, std::move(tpm), config_.host_pcr);
  if (!log && log.error().code() == Errc::kFormat) {
    // The host PCR no longer holds this log: the host TPM was reset (a reboot, or a new
    // embedded swtpm). The old log is kept beside, and a new one starts.
    std::string old = path + "." + std::to_string(now_seconds());
    spdlog::warn("host log: {}; kept as {} and started anew", log.error().message(), old);
    if (::rename(path.c_str(), old.c_str()) != 0) return errno_error("renaming " + path, errno);
    CTRUST_ASSIGN_OR_RETURN(tpm::Tpm again, tpm::Tpm::open(tcti));
    log = ContainerLog::open(path, std::move(again), config_.host_pcr);
  }
  if (!log) return std::move(log).error().with_context("host log " + path);
  host_log_ = std::make_unique<ContainerLog>(std::move(*log));
  return ok_result();
}

Result<void> AgentImpl::host_record(const std::string& name, const json& doc) {
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry e, json_entry(name, doc, config_.host_pcr));
  std::lock_guard lock(host_mutex_);
  return host_log_->append(e);
}

Result<void> AgentImpl::record_agent_start(const std::string& config_bytes) {
  std::vector<imalog::Entry> entries;
  CTRUST_ASSIGN_OR_RETURN(crypto::Digest self,
                          crypto::digest_file(crypto::HashAlg::kSha256, "/proc/self/exe"));
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry binary,
                          named_digest_entry("ctrustd", self, config_.host_pcr));
  entries.push_back(std::move(binary));
  CTRUST_ASSIGN_OR_RETURN(crypto::Digest conf,
                          crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(config_bytes)));
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry config,
                          named_digest_entry("ctrustd-config", conf, config_.host_pcr));
  entries.push_back(std::move(config));
  json policies = json::array();
  {
    std::lock_guard lock(policies_mutex_);
    for (const auto& [name, p] : policies_) {
      CTRUST_ASSIGN_OR_RETURN(imalog::Entry e, named_digest_entry("ctrust-policy:" + name,
                                                                  p->digest, config_.host_pcr));
      entries.push_back(std::move(e));
      policies.push_back({{"name", name}, {"digest", "sha256:" + p->digest.hex()}});
    }
  }
  json bpf = json::array();
#ifdef CTRUST_WITH_BPF
  if (bpf_) {
    for (const auto& [name, digest] : bpf_->object_digests()) {
      CTRUST_ASSIGN_OR_RETURN(
          crypto::Digest d,
          crypto::Digest::from_hex(crypto::HashAlg::kSha256, std::string_view(digest).substr(7)));
      CTRUST_ASSIGN_OR_RETURN(imalog::Entry e,
                              named_digest_entry("ctrust-bpf:" + name, d, config_.host_pcr));
      entries.push_back(std::move(e));
      bpf.push_back({{"name", name}, {"digest", digest}});
    }
  }
#endif
  json doc = {{"event", "agent-start"},
              {"time", now_seconds()},
              {"binary", "sha256:" + self.hex()},
              {"config", "sha256:" + conf.hex()},
              {"policies", policies},
              {"bpf", bpf},
              {"backend", backend_}};
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry start,
                          json_entry("ctrust:agent-start", doc, config_.host_pcr));
  entries.push_back(std::move(start));
  std::lock_guard lock(host_mutex_);
  return host_log_->append(entries);
}

// The container's own log says that it ran unwatched from some point on: a violation
// record, extended into its vTPM. Opening the log also extends what a crash left unextended.
void AgentImpl::record_gap(const std::string& id, const std::string& path) {
  auto info = vtpms_->get(id);
  if (!info || info->status != tpm::VtpmStatus::kRunning) {
    spdlog::warn("{}: its vTPM is gone ({}): the log cannot be extended", id,
                 info ? std::string(tpm::vtpm_status_name(info->status)) : info.error().message());
    return;
  }
  auto done = [&]() -> Result<std::uint64_t> {
    CTRUST_ASSIGN_OR_RETURN(tpm::Tpm vtpm, tpm::Tpm::open(info->tcti));
    CTRUST_ASSIGN_OR_RETURN(ContainerLog log, ContainerLog::open(path, std::move(vtpm)));
    CTRUST_ASSIGN_OR_RETURN(
        imalog::Entry v, imalog::make_violation("ima-ng", 10, "ctrust:agent-gap",
                                                crypto::HashAlg::kSha256, crypto::HashAlg::kSha1));
    CTRUST_TRY(log.append(v));
    return log.reconciliation().extended_on_open;
  }();
  if (!done) {
    spdlog::error("{}: recording the agent gap: {}", id, done.error().message());
  } else if (*done > 0) {
    spdlog::warn("{}: {} logged entries were extended into the vTPM only now", id, *done);
  }
}

}  // namespace ctrust::agent
