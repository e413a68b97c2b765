#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/agent_impl.h"
#include "attest/evidence.h"
#include "util/file.h"

namespace ctrust::agent {

namespace fs = std::filesystem;
using nlohmann::json;

// --- attestation API ------------------------------------------------------------------

namespace {

// Entries [offset, count) of a binary log file; a verifier holding more than the log has
// (a log that started anew) gets the whole log.
Result<attest::LogChunk> read_log_chunk(const std::string& path, std::uint64_t offset,
                                        std::uint64_t count) {
  attest::LogChunk chunk;
  chunk.count = count;
  chunk.offset = offset > count ? 0 : offset;
  if (chunk.offset == count) return chunk;
  CTRUST_ASSIGN_OR_RETURN(imalog::BinaryReader reader,
                          imalog::BinaryReader::open(path, imalog::BinaryFormat{}));
  imalog::Entry e;
  for (std::uint64_t i = 0; i < count; ++i) {
    CTRUST_ASSIGN_OR_RETURN(bool more, reader.next(e));
    if (!more) {
      return Error(Errc::kTruncated,
                   path + " holds " + std::to_string(i) + " entries, not " + std::to_string(count));
    }
    if (i < chunk.offset) continue;
    CTRUST_TRY(imalog::append_binary(chunk.entries, e));
    if (chunk.entries.size() > attest::kMaxLogChunkBytes) {
      return Error(Errc::kLimit, path + ": the entries after " + std::to_string(chunk.offset) +
                                     " exceed one message (" +
                                     std::to_string(attest::kMaxLogChunkBytes) + " bytes)");
    }
  }
  return chunk;
}

attest::QuoteEvidence quote_evidence(const tpm::Quote& q) {
  attest::QuoteEvidence out;
  out.message = q.message;
  out.signature = q.signature;
  std::size_t k = 0;
  for (const auto& bank : q.pcrs.selection) {
    for (unsigned pcr : bank.pcrs) {
      if (k >= q.pcrs.values.size()) break;
      const auto& v = q.pcrs.values[k++];
      if (bank.alg == crypto::HashAlg::kSha256) {
        out.pcrs.emplace_back(pcr, Bytes(v.view().begin(), v.view().end()));
      }
    }
  }
  return out;
}

std::string random_hex(std::size_t bytes) {
  Bytes b(bytes);
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  urandom.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(b.size()));
  return to_hex(b);
}

}  // namespace

Result<void> AgentImpl::start_attestation_api() {
  std::string agent_id = config_.agent_id;
  if (agent_id.empty()) {
    char name[256] = {};
    if (::gethostname(name, sizeof(name) - 1) != 0) return errno_error("gethostname", errno);
    agent_id = name;
  }
  config_.agent_id = agent_id;
  {
    std::lock_guard lock(host_mutex_);
    CTRUST_ASSIGN_OR_RETURN(tpm::TpmKey ak,
                            host_tpm_aggregate_->attestation_key(tpm::KeyAlg::kEccP256));
    host_ak_.emplace(std::move(ak));
    CTRUST_ASSIGN_OR_RETURN(tpm::TpmKey ek,
                            host_tpm_aggregate_->endorsement_key(tpm::KeyAlg::kEccP256));
    host_ek_public_ = ek.public_area().marshal_tpm2b();
    CTRUST_ASSIGN_OR_RETURN(host_ek_certificate_,
                            host_tpm_aggregate_->ek_certificate(tpm::KeyAlg::kEccP256));
  }
  CTRUST_ASSIGN_OR_RETURN(net::TlsIdentity tls,
                          load_or_make_tls_identity(config_.api_dir(), agent_id));
  CTRUST_ASSIGN_OR_RETURN(tls_fingerprint_, net::spki_fingerprint(tls.cert));
  instance_ = random_hex(8);
  started_ = now_seconds();
  AttestationSource source;
  source.identity = [this](const std::optional<Bytes>& nonce) { return identity(nonce); };
  source.activate = [this](const attest::ActivateRequest& r) { return activate(r); };
  source.answer = [this](const attest::Challenge& c) { return answer(c); };
  CTRUST_ASSIGN_OR_RETURN(api_, start_api(config_, std::move(tls), std::move(source)));
  return ok_result();
}

Result<attest::Identity> AgentImpl::identity(const std::optional<Bytes>& nonce) {
  attest::Identity id;
  id.agent_id = config_.agent_id;
  id.ek_public = host_ek_public_;
  id.ek_certificate = host_ek_certificate_;
  id.ak_public = host_ak_->public_area().marshal_tpm2b();
  id.tls_fingerprint = tls_fingerprint_;
  if (vtpms_) id.vtpm_ca_certificates = vtpms_->ca_certificates();
  if (nonce) {
    tpm::PcrSelection sel{{crypto::HashAlg::kSha256, {config_.host_pcr}}};
    std::lock_guard lock(host_mutex_);
    CTRUST_ASSIGN_OR_RETURN(
        tpm::Quote q, host_tpm_aggregate_->quote(
                          *host_ak_, sel, attest::tls_binding_data(*nonce, tls_fingerprint_)));
    id.tls_quote = quote_evidence(q);
  }
  return id;
}

Result<attest::ActivateResponse> AgentImpl::activate(const attest::ActivateRequest& request) {
  tpm::Credential credential{request.credential_blob, request.secret};
  std::lock_guard lock(host_mutex_);
  CTRUST_ASSIGN_OR_RETURN(tpm::TpmKey ek,
                          host_tpm_aggregate_->endorsement_key(tpm::KeyAlg::kEccP256));
  CTRUST_ASSIGN_OR_RETURN(Bytes secret,
                          host_tpm_aggregate_->activate_credential(*host_ak_, ek, credential));
  attest::ActivateResponse out;
  out.proof = attest::activation_proof(secret, tls_fingerprint_);
  return out;
}

Result<attest::Evidence> AgentImpl::answer(const attest::Challenge& challenge) {
  attest::Evidence ev;
  ev.agent_instance = instance_;
  ev.agent_started = started_;
  std::map<std::string, std::uint64_t> asked;
  for (const auto& c : challenge.containers) asked[c.id] = c.log_offset;
  std::vector<std::shared_ptr<Container>> running;
  for (auto& c : containers_.all()) {
    if (challenge.all || asked.contains(c->id)) running.push_back(std::move(c));
  }
  std::set<std::string> answered;
  for (const auto& c : running) {
    std::uint64_t offset = asked.contains(c->id) ? asked[c->id] : 0;
    // A start not settled yet: its host record before the host's quote (the log below).
    (void)settle_start(*c);
    auto quoted =
        c->guard->with_log([&](ContainerLog* guarded) -> Result<attest::ContainerEvidence> {
          ContainerLog* log = guarded != nullptr ? guarded : c->log.get();
          if (log == nullptr) return Error(Errc::kNotFound, c->id + " has no log");
          // A start not settled yet: its entries extended first, so that the quote vouches
          // for the whole log (and no evidence at all while they cannot be).
          CTRUST_TRY(log->settle());
          attest::ContainerEvidence ce;
          ce.id = c->id;
          ce.state = "running";
          CTRUST_ASSIGN_OR_RETURN(ce.log, read_log_chunk(c->log_path, offset, log->entries()));
          CTRUST_ASSIGN_OR_RETURN(tpm::TpmKey ak,
                                  log->vtpm().attestation_key(tpm::KeyAlg::kEccP256));
          ce.ak_public = ak.public_area().marshal_tpm2b();
          tpm::PcrSelection sel{{crypto::HashAlg::kSha256, {10}}};
          CTRUST_ASSIGN_OR_RETURN(tpm::Quote q,
                                  log->vtpm().quote(ak, sel,
                                                    attest::container_qualifying_data(
                                                        challenge.nonce, c->id, log->entries())));
          ce.quote = quote_evidence(q);
          return ce;
        });
    if (!quoted) {
      // One container's vTPM failing must not hide the others: the verifier sees it missing.
      spdlog::warn("{}: no evidence: {}", c->id, quoted.error().message());
      continue;
    }
    answered.insert(c->id);
    ev.containers.push_back(std::move(*quoted));
  }
  // Asked about, not running: a stopped container's final log, or unknown.
  for (const auto& [id, offset] : asked) {
    if (answered.contains(id)) continue;
    if (!tpm::valid_container_id(id)) {
      ev.unknown.push_back(id);
      continue;
    }
    std::string dir = config_.containers_dir() + "/" + id;
    auto status = read_file(dir + "/status", 64);
    // A container being removed leaves the map before its status says so: wait for it
    // rather than call it unknown (which a verifier must treat as withheld).
    for (int i = 0; i < 20 && status && std::string(status->begin(), status->end()) == "running";
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      status = read_file(dir + "/status", 64);
    }
    if (!status || std::string(status->begin(), status->end()) == "running" ||
        std::any_of(running.begin(), running.end(),
                    [&wanted = id](const auto& c) { return c->id == wanted; })) {
      ev.unknown.push_back(id);
      continue;
    }
    std::uint64_t count = 0;
    {
      auto reader = imalog::BinaryReader::open(dir + "/measurements.bin", imalog::BinaryFormat{});
      if (!reader) {
        ev.unknown.push_back(id);
        continue;
      }
      imalog::Entry e;
      while (true) {
        auto more = reader->next(e);
        if (!more || !*more) break;
        ++count;
      }
    }
    auto chunk = read_log_chunk(dir + "/measurements.bin", offset, count);
    if (!chunk) {
      ev.unknown.push_back(id);
      continue;
    }
    attest::ContainerEvidence ce;
    ce.id = id;
    ce.state = "stopped";
    ce.log = std::move(*chunk);
    ev.containers.push_back(std::move(ce));
  }
  // The host last: its quote vouches for the container quotes and the host log's length.
  tpm::PcrSelection sel{
      {crypto::HashAlg::kSha256, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, config_.host_pcr}}};
  std::lock_guard lock(host_mutex_);
  std::uint64_t count = host_log_->entries();
  CTRUST_ASSIGN_OR_RETURN(ev.host_log, read_log_chunk(config_.host_dir() + "/measurements.bin",
                                                      challenge.host_log_offset, count));
  CTRUST_ASSIGN_OR_RETURN(
      tpm::Quote q,
      host_tpm_aggregate_->quote(
          *host_ak_, sel, attest::host_qualifying_data(challenge.nonce, count, ev.containers)));
  ev.host_quote = quote_evidence(q);
  return ev;
}

}  // namespace ctrust::agent
