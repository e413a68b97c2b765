#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "agent/agent_impl.h"
#include "util/file.h"
#include "util/text.h"

namespace ctrust::agent {

namespace fs = std::filesystem;
using nlohmann::json;

Result<std::shared_ptr<LoadedPolicy>> AgentImpl::read_policy(const std::string& path) {
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(path, policy::kMaxPolicyBytes));
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  auto parsed = policy::parse_policy(text);
  if (!parsed) return std::move(parsed).error().with_context(path);
  // The name becomes a file name in the policy directory: no '/', no leading '.'.
  if (!tpm::valid_container_id(parsed->name)) {
    return Error(Errc::kInvalidArgument,
                 path + ": policy name " + printable(parsed->name, 64) +
                     " is not usable by the agent (1-128 of A-Z a-z 0-9 _ . -, not starting "
                     "with '.')");
  }
  auto loaded = std::make_shared<LoadedPolicy>(
      LoadedPolicy{parsed->name, path, crypto::Digest::zero(crypto::HashAlg::kSha256),
                   std::move(*parsed), std::nullopt, ""});
  CTRUST_ASSIGN_OR_RETURN(loaded->digest, crypto::digest_bytes(crypto::HashAlg::kSha256, bytes));
  if (loaded->policy.signature) {
    CTRUST_ASSIGN_OR_RETURN(policy::VerifyResult v,
                            policy::verify_policy(loaded->policy, trust_, now_seconds()));
    if (!v.ok) return Error(Errc::kInvalidArgument, path + ": " + v.reason);
    loaded->signer = v.signer;
  } else if (!config_.allow_unsigned_policies) {
    return Error(Errc::kInvalidArgument,
                 path +
                     ": the policy is not signed (sign it with `ctrust policy sign`, or set "
                     "policies.allow_unsigned for experiments)");
  } else {
    if (auto problem = policy::validity_problem(loaded->policy, now_seconds()); !problem.empty()) {
      return Error(Errc::kInvalidArgument, path + ": " + problem);
    }
  }
  auto compiled = policy::CompiledPolicy::compile(loaded->policy);
  if (!compiled) return std::move(compiled).error().with_context(path);
  loaded->compiled.emplace(std::move(*compiled));
  return loaded;
}

Result<void> AgentImpl::load_policies() {
  for (const auto& file : config_.policy_trust) {
    auto anchors = policy::load_trust_anchors(file);
    if (!anchors) return std::move(anchors).error().with_context("policies.trust");
    for (auto& k : anchors->keys) trust_.keys.push_back(std::move(k));
    for (auto& c : anchors->certificates) trust_.certificates.push_back(std::move(c));
  }
  // The default directory is the agent's own; one the configuration names is the operator's
  // and used as it is: it may be read-only (a Kubernetes ConfigMap), and must exist.
  if (config_.policy_dir.empty()) CTRUST_TRY(make_dir(config_.policies()));
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(config_.policies(), ec)) {
    if (entry.path().extension() == ".json") files.push_back(entry.path().string());
  }
  if (ec) return Error(Errc::kIo, "listing " + config_.policies() + ": " + ec.message());
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    auto loaded = read_policy(file);
    if (!loaded) {
      // One bad file must not keep the others (or the agent) from working; it is loud.
      spdlog::error("policy not loaded: {}", loaded.error().message());
      continue;
    }
    std::lock_guard lock(policies_mutex_);
    policies_[(*loaded)->name] = *loaded;
    spdlog::info("policy {} loaded from {} (signer {})", (*loaded)->name, file,
                 (*loaded)->signer.empty() ? "none" : (*loaded)->signer);
  }
  return ok_result();
}

Result<json> AgentImpl::policy_load(const json& request) {
  if (!request.contains("path") || !request["path"].is_string()) {
    return Error(Errc::kInvalidArgument, "policy_load needs \"path\"");
  }
  std::string path = request["path"].get<std::string>();
  CTRUST_ASSIGN_OR_RETURN(auto loaded, read_policy(path));
  // Kept in the policy directory so that a restarted agent loads it again.
  std::string kept = config_.policies() + "/" + loaded->name + ".json";
  CTRUST_ASSIGN_OR_RETURN(Bytes bytes, read_file(path, policy::kMaxPolicyBytes));
  {
    std::lock_guard lock(policies_mutex_);
    if (auto old = policies_.find(loaded->name); old != policies_.end()) {
      if (loaded->policy.serial < old->second->policy.serial) {
        return Error(Errc::kInvalidArgument,
                     "policy " + loaded->name + " serial " + std::to_string(loaded->policy.serial) +
                         " is older than the loaded serial " +
                         std::to_string(old->second->policy.serial) + " (rollback refused)");
      }
    }
    CTRUST_TRY(write_file_atomic(kept, bytes, 0600));
    loaded->path = kept;
    policies_[loaded->name] = loaded;
  }
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry e, named_digest_entry("ctrust-policy:" + loaded->name,
                                                              loaded->digest, config_.host_pcr));
  {
    std::lock_guard lock(host_mutex_);
    CTRUST_TRY(host_log_->append(e));
  }
  spdlog::info("policy {} loaded (serial {}, {} entries)", loaded->name, loaded->policy.serial,
               loaded->compiled->size());
  return json{{"ok", true},
              {"policy",
               {{"name", loaded->name},
                {"digest", "sha256:" + loaded->digest.hex()},
                {"serial", loaded->policy.serial},
                {"entries", loaded->compiled->size()},
                {"mode", policy::mode_name(loaded->policy.mode)},
                {"signer", loaded->signer}}}};
}

}  // namespace ctrust::agent
