#include "attest/soft_quoter.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <tss2/tss2_mu.h>

#include "crypto/digest.h"
#include "imalog/binary.h"
#include "tpm/attest.h"
#include "tpm/pcr.h"
#include "tpm/public.h"

namespace ctrust::attest {

namespace {

Bytes sha256_of(ByteView a, ByteView b = {}) {
  Bytes out(32);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int len = 0;
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, a.data(), a.size());
  if (!b.empty()) EVP_DigestUpdate(ctx, b.data(), b.size());
  EVP_DigestFinal_ex(ctx, out.data(), &len);
  EVP_MD_CTX_free(ctx);
  return out;
}

Result<void> copy_coordinate(EVP_PKEY* pkey, const char* name, TPM2B_ECC_PARAMETER& out) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) {
    return Error(Errc::kCrypto, "reading the EC public point");
  }
  out.size = 32;
  int n = BN_bn2binpad(bn, out.buffer, 32);
  BN_free(bn);
  if (n != 32) return Error(Errc::kCrypto, "EC coordinate is not 32 bytes");
  return ok_result();
}

}  // namespace

Result<SoftQuoter> SoftQuoter::create() {
  CTRUST_ASSIGN_OR_RETURN(crypto::PrivateKey key,
                          crypto::PrivateKey::generate(crypto::KeyType::kEcdsaP256));
  TPM2B_PUBLIC pub = tpm::ak_template(tpm::KeyAlg::kEccP256);
  TPMS_ECC_POINT& point = pub.publicArea.unique.ecc;
  CTRUST_TRY(copy_coordinate(key.native(), OSSL_PKEY_PARAM_EC_PUB_X, point.x));
  CTRUST_TRY(copy_coordinate(key.native(), OSSL_PKEY_PARAM_EC_PUB_Y, point.y));
  tpm::TpmPublic area(pub.publicArea);
  CTRUST_ASSIGN_OR_RETURN(Bytes name, area.name());
  return SoftQuoter(std::move(key), area.marshal_tpm2b(), std::move(name));
}

Result<QuoteEvidence> SoftQuoter::quote(const std::vector<std::pair<unsigned, Bytes>>& pcrs,
                                        ByteView qualifying_data, std::uint32_t reset_count) {
  TPMS_ATTEST a{};
  a.magic = TPM2_GENERATED_VALUE;
  a.type = TPM2_ST_ATTEST_QUOTE;
  a.qualifiedSigner.size = static_cast<UINT16>(name_.size());
  std::copy(name_.begin(), name_.end(), a.qualifiedSigner.name);
  if (qualifying_data.size() > sizeof(a.extraData.buffer)) {
    return Error(Errc::kInvalidArgument, "qualifying data too long");
  }
  a.extraData.size = static_cast<UINT16>(qualifying_data.size());
  std::copy(qualifying_data.begin(), qualifying_data.end(), a.extraData.buffer);
  a.clockInfo.clock = clock_.fetch_add(1);
  a.clockInfo.resetCount = reset_count;
  a.clockInfo.safe = 1;
  tpm::PcrSelection selection;
  tpm::PcrBank bank;
  bank.alg = crypto::HashAlg::kSha256;
  Bytes concat;
  for (const auto& [index, value] : pcrs) {
    bank.pcrs.push_back(index);
    concat.insert(concat.end(), value.begin(), value.end());
  }
  selection.push_back(bank);
  a.attested.quote.pcrSelect = tpm::to_tpml(selection);
  Bytes digest = sha256_of(concat);
  a.attested.quote.pcrDigest.size = 32;
  std::copy(digest.begin(), digest.end(), a.attested.quote.pcrDigest.buffer);
  Bytes message(sizeof(TPMS_ATTEST));
  size_t offset = 0;
  if (Tss2_MU_TPMS_ATTEST_Marshal(&a, message.data(), message.size(), &offset) != 0) {
    return Error(Errc::kInternal, "marshalling TPMS_ATTEST");
  }
  message.resize(offset);
  crypto::SignOptions options;
  options.hash = crypto::HashAlg::kSha256;
  CTRUST_ASSIGN_OR_RETURN(Bytes der, key_.sign(message, options));
  tpm::TpmSignature sig;
  sig.scheme = TPM2_ALG_ECDSA;
  sig.hash = crypto::HashAlg::kSha256;
  sig.signature = std::move(der);
  CTRUST_ASSIGN_OR_RETURN(Bytes signature, tpm::marshal_signature(sig));
  QuoteEvidence q;
  q.message = std::move(message);
  q.signature = std::move(signature);
  q.pcrs = pcrs;
  return q;
}

Result<void> SimLog::add(const imalog::Entry& entry) {
  Bytes td(32, 0xff);
  if (!entry.is_violation()) {
    CTRUST_ASSIGN_OR_RETURN(imalog::Digest d,
                            imalog::template_digest(entry, imalog::HashAlg::kSha256));
    td.assign(d.view().begin(), d.view().end());
  }
  pcr_ = sha256_of(pcr_, td);
  entries_.push_back(entry);
  return ok_result();
}

Result<void> SimLog::add_file(const std::string& path, std::string_view content) {
  imalog::MeasurementSpec spec;
  spec.pcr = pcr_index_;
  spec.name = path;
  CTRUST_ASSIGN_OR_RETURN(spec.file_digest,
                          crypto::digest_bytes(crypto::HashAlg::kSha256, as_bytes(content)));
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry e, imalog::make_entry(spec, crypto::HashAlg::kSha1));
  return add(e);
}

Result<void> SimLog::add_buf(const std::string& name, std::string_view json_text) {
  imalog::MeasurementSpec spec;
  spec.template_name = "ima-buf";
  spec.pcr = pcr_index_;
  spec.name = name;
  spec.buf.assign(json_text.begin(), json_text.end());
  CTRUST_ASSIGN_OR_RETURN(spec.file_digest,
                          crypto::digest_bytes(crypto::HashAlg::kSha256, spec.buf));
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry e, imalog::make_entry(spec, crypto::HashAlg::kSha1));
  return add(e);
}

Result<void> SimLog::add_digest(const std::string& name, ByteView sha256) {
  imalog::MeasurementSpec spec;
  spec.pcr = pcr_index_;
  spec.name = name;
  CTRUST_ASSIGN_OR_RETURN(spec.file_digest,
                          crypto::Digest::from_bytes(crypto::HashAlg::kSha256, sha256));
  CTRUST_ASSIGN_OR_RETURN(imalog::Entry e, imalog::make_entry(spec, crypto::HashAlg::kSha1));
  return add(e);
}

Result<void> SimLog::add_violation(const std::string& name) {
  CTRUST_ASSIGN_OR_RETURN(
      imalog::Entry v, imalog::make_violation("ima-ng", pcr_index_, name, crypto::HashAlg::kSha256,
                                              crypto::HashAlg::kSha1));
  return add(v);
}

Result<LogChunk> make_chunk(const std::vector<imalog::Entry>& entries, std::uint64_t offset,
                            std::uint64_t count) {
  LogChunk chunk;
  chunk.offset = offset;
  chunk.count = count;
  for (const auto& e : entries) CTRUST_TRY(imalog::append_binary(chunk.entries, e));
  return chunk;
}

Result<LogChunk> SimLog::chunk(std::uint64_t offset) const {
  if (offset > entries_.size()) return Error(Errc::kInvalidArgument, "offset beyond the log");
  std::vector<imalog::Entry> tail(entries_.begin() + static_cast<std::ptrdiff_t>(offset),
                                  entries_.end());
  return make_chunk(tail, offset, entries_.size());
}

Result<SimHost> SimHost::create(const std::string& instance) {
  CTRUST_ASSIGN_OR_RETURN(SoftQuoter ak, SoftQuoter::create());
  SimHost host(std::move(ak), instance);
  for (unsigned i = 0; i <= 9; ++i) {
    host.boot_pcrs_.emplace_back(i, sha256_of(as_bytes("boot pcr " + std::to_string(i))));
  }
  Bytes binary = sha256_of(as_bytes("ctrustd binary"));
  Bytes config = sha256_of(as_bytes("ctrustd config"));
  CTRUST_TRY(host.host_log_.add_digest("ctrustd", binary));
  CTRUST_TRY(host.host_log_.add_digest("ctrustd-config", config));
  CTRUST_TRY(host.host_log_.add_buf(
      "ctrust:agent-start",
      R"({"event":"agent-start","binary":"sha256:)" + to_hex(binary) + R"("})"));
  return host;
}

Bytes SimHost::boot_aggregate() const {
  Bytes concat;
  for (const auto& [i, v] : boot_pcrs_) concat.insert(concat.end(), v.begin(), v.end());
  return sha256_of(concat);
}

Result<SimHost::Container*> SimHost::add_container(const std::string& id, ByteView image,
                                                   ByteView policy_digest,
                                                   const std::string& policy_name) {
  CTRUST_ASSIGN_OR_RETURN(SoftQuoter ak, SoftQuoter::create());
  auto c = std::make_unique<Container>(Container{id, std::move(ak), SimLog(10), false});
  CTRUST_TRY(c->log.add_digest("boot_aggregate", boot_aggregate()));
  CTRUST_TRY(c->log.add_digest("ctrust:image", image));
  std::string policy;
  if (!policy_digest.empty()) {
    CTRUST_TRY(c->log.add_digest("ctrust:policy:" + policy_name, policy_digest));
    policy = "sha256:" + to_hex(policy_digest);
  }
  CTRUST_TRY(host_log_.add_buf("ctrust:container-created",
                               R"({"event":"container-created","container":")" + id +
                                   R"(","image":"sha256:)" + to_hex(image) + R"(","policy":")" +
                                   policy + R"(","mode":"enforce","vtpm_ak_name":")" +
                                   to_hex(c->ak.name()) + R"("})"));
  containers_.push_back(std::move(c));
  return containers_.back().get();
}

SimHost::Container* SimHost::container(const std::string& id) {
  for (auto& c : containers_) {
    if (c->id == id) return c.get();
  }
  return nullptr;
}

Result<void> SimHost::exec(const std::string& id, const std::string& path,
                           std::string_view content) {
  Container* c = container(id);
  if (c == nullptr) return Error(Errc::kNotFound, "no container " + id);
  return c->log.add_file(path, content);
}

Result<void> SimHost::stop(const std::string& id) {
  Container* c = container(id);
  if (c == nullptr) return Error(Errc::kNotFound, "no container " + id);
  c->stopped = true;
  return host_log_.add_buf("ctrust:container-stopped",
                           R"({"event":"container-stopped","container":")" + id + R"("})");
}

Result<Evidence> SimHost::answer(const Challenge& challenge) {
  Evidence e;
  e.agent_instance = instance_;
  e.agent_started = 1;
  for (const auto& c : containers_) {
    std::uint64_t offset = 0;
    bool asked = challenge.all;
    for (const auto& cursor : challenge.containers) {
      if (cursor.id == c->id) {
        offset = cursor.log_offset;
        asked = true;
      }
    }
    if (!asked) continue;
    ContainerEvidence ce;
    ce.id = c->id;
    ce.state = c->stopped ? "stopped" : "running";
    CTRUST_ASSIGN_OR_RETURN(ce.log, c->log.chunk(std::min(offset, c->log.count())));
    if (!c->stopped) {
      ce.ak_public = c->ak.public_tpm2b();
      CTRUST_ASSIGN_OR_RETURN(
          QuoteEvidence q,
          c->ak.quote({{10, c->log.pcr()}},
                      container_qualifying_data(challenge.nonce, c->id, c->log.count())));
      ce.quote = std::move(q);
    }
    e.containers.push_back(std::move(ce));
  }
  for (const auto& cursor : challenge.containers) {
    if (container(cursor.id) == nullptr) e.unknown.push_back(cursor.id);
  }
  CTRUST_ASSIGN_OR_RETURN(e.host_log,
                          host_log_.chunk(std::min(challenge.host_log_offset, host_log_.count())));
  auto pcrs = boot_pcrs_;
  pcrs.emplace_back(13, host_log_.pcr());
  CTRUST_ASSIGN_OR_RETURN(
      e.host_quote,
      ak_.quote(pcrs, host_qualifying_data(challenge.nonce, host_log_.count(), e.containers),
                reset_count));
  return e;
}

}  // namespace ctrust::attest
