#include "attest/verify.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "imalog/binary.h"
#include "imalog/entry.h"
#include "tpm/attest.h"
#include "tpm/public.h"
#include "util/json.h"
#include "util/text.h"

namespace ctrust::attest {

using nlohmann::json;

namespace {

Reason reason(std::string code, std::string message) {
  Reason r;
  r.code = std::move(code);
  r.message = std::move(message);
  return r;
}

// A found problem with its severity.
struct Finding {
  Status status;
  Reason reason;
};

// Incremental SHA-256 PCR extension, with one reusable context: the hot loop of replay.
class Extender {
 public:
  // The method is fetched once per process: EVP_sha256() would be looked up again by
  // every EVP_DigestInit_ex under OpenSSL 3, which doubled the cost of a replay.
  Extender() : ctx_(EVP_MD_CTX_new()), md_(crypto::evp_md(crypto::HashAlg::kSha256)) {}
  ~Extender() { EVP_MD_CTX_free(ctx_); }
  Extender(const Extender&) = delete;
  Extender& operator=(const Extender&) = delete;

  bool hash(ByteView a, ByteView b, std::uint8_t* out) {
    unsigned int len = 0;
    return ctx_ != nullptr && EVP_DigestInit_ex(ctx_, md_, nullptr) == 1 &&
           EVP_DigestUpdate(ctx_, a.data(), a.size()) == 1 &&
           (b.empty() || EVP_DigestUpdate(ctx_, b.data(), b.size()) == 1) &&
           EVP_DigestFinal_ex(ctx_, out, &len) == 1;
  }
  // pcr = SHA-256(pcr || template digest), the digest being all 0xFF for a violation.
  Result<void> extend(Bytes& pcr, const imalog::Entry& entry) {
    std::uint8_t td[32];
    if (entry.is_violation()) {
      std::fill(std::begin(td), std::end(td), 0xff);
    } else if (entry.template_name == "ima") {
      CTRUST_ASSIGN_OR_RETURN(imalog::Digest d,
                              imalog::template_digest(entry, imalog::HashAlg::kSha256));
      std::copy(d.view().begin(), d.view().end(), td);
    } else if (!hash(entry.data, {}, td)) {
      return Error(Errc::kCrypto, "SHA-256 failed");
    }
    std::uint8_t next[32];
    if (!hash(pcr, ByteView(td, 32), next)) return Error(Errc::kCrypto, "SHA-256 failed");
    std::copy(std::begin(next), std::end(next), pcr.begin());
    return ok_result();
  }

 private:
  EVP_MD_CTX* ctx_;
  const EVP_MD* md_;
};

// Reads every entry of a chunk; an Error is a malformed chunk.
Result<std::vector<imalog::Entry>> read_chunk(const LogChunk& chunk, const char* what) {
  std::vector<imalog::Entry> entries;
  if (chunk.entries.empty()) return entries;
  imalog::BinaryFormat format;  // SHA-1 headers, little-endian: what ctrust writes
  CTRUST_ASSIGN_OR_RETURN(imalog::BinaryReader reader,
                          imalog::BinaryReader::from_memory(chunk.entries, format));
  std::uint64_t expected = chunk.count - chunk.offset;
  // Never trust the count for an allocation: at most what the bytes can hold.
  entries.reserve(
      static_cast<std::size_t>(std::min<std::uint64_t>(expected, chunk.entries.size() / 40)));
  while (true) {
    imalog::Entry e;
    auto more = reader.next(e);
    if (!more) return std::move(more).error().with_context(what);
    if (!*more) break;
    entries.push_back(std::move(e));
    if (entries.size() > expected) break;
  }
  if (entries.size() != chunk.count - chunk.offset) {
    return Error(Errc::kFormat, std::string(what) + " holds " + std::to_string(entries.size()) +
                                    " entries where its count says " +
                                    std::to_string(chunk.count - chunk.offset));
  }
  return entries;
}

std::optional<Bytes> quoted_pcr(const QuoteEvidence& q, unsigned index) {
  for (const auto& [i, v] : q.pcrs) {
    if (i == index) return v;
  }
  return std::nullopt;
}

// Verifies a quote's signature and PCR digest (tpm::verify_quote) and its binding.
std::vector<Finding> check_quote(const crypto::PublicKey& ak, const QuoteEvidence& q,
                                 ByteView expected_binding, const std::string& what,
                                 tpm::Attestation* out) {
  std::vector<Finding> findings;
  tpm::PcrValues values;
  tpm::PcrBank bank;
  bank.alg = crypto::HashAlg::kSha256;
  for (const auto& [i, v] : q.pcrs) {
    bank.pcrs.push_back(i);
    auto d = crypto::Digest::from_bytes(crypto::HashAlg::kSha256, v);
    if (!d) {
      findings.push_back({Status::kContraindicated, reason("quote", what + ": bad PCR value")});
      return findings;
    }
    values.values.push_back(*d);
  }
  values.selection.push_back(bank);
  auto verdict = tpm::verify_quote(ak, q.message, q.signature, std::nullopt, &values);
  if (!verdict) {
    findings.push_back(
        {Status::kContraindicated, reason("quote", what + ": " + verdict.error().message())});
    return findings;
  }
  for (const auto& p : verdict->problems) {
    std::string code = p.find("signature") != std::string::npos ? "quote-signature" : "quote";
    std::string message = what;
    message += ": ";
    message += p;
    Reason r = reason(code, std::move(message));
    r.quote = what;
    findings.push_back({Status::kContraindicated, std::move(r)});
  }
  if (findings.empty() &&
      !std::equal(verdict->attestation.extra_data.begin(), verdict->attestation.extra_data.end(),
                  expected_binding.begin(), expected_binding.end())) {
    Reason r = reason("quote-binding", what +
                                           ": its qualifying data is not this challenge's "
                                           "binding (a replayed quote, a wrong nonce, or a "
                                           "quote made for another container or host)");
    r.quote = what;
    findings.push_back({Status::kContraindicated, std::move(r)});
  }
  if (out != nullptr) *out = verdict->attestation;
  return findings;
}

std::string record_name(const imalog::Entry& e, const imalog::Fields& f) {
  (void)e;
  return std::string(f.name);
}

bool listed(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

Result<json> record_json(const imalog::Fields& f) {
  std::string_view text(reinterpret_cast<const char*>(f.buf.data()), f.buf.size());
  return parse_json_strict(text, 4);
}

std::string json_string(const json& doc, const char* key) {
  auto it = doc.find(key);
  if (it == doc.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

// What the host log says, entry by entry, once its replay matched the quote.
void process_host_records(const std::vector<imalog::Entry>& entries, std::uint64_t first,
                          const ReferenceValues& refs, HostState& host,
                          std::map<std::string, ContainerState>& containers,
                          std::vector<Finding>& findings,
                          std::map<std::string, std::vector<Finding>>& container_findings) {
  auto check_ref = [&](const std::vector<std::string>& list, const std::string& value,
                       const std::string& what, std::uint64_t index) {
    if (list.empty()) {
      Reason r = reason("no-reference-value",
                        "no reference value is configured for " + what + " (" + value + ")");
      r.entry = index;
      findings.push_back({Status::kWarning, std::move(r)});
    } else if (!listed(list, value)) {
      Reason r = reason("reference-value", what + " " + value + " is not a reference value");
      r.entry = index;
      findings.push_back({Status::kContraindicated, std::move(r)});
    }
  };
  for (std::size_t i = 0; i < entries.size(); ++i) {
    std::uint64_t index = first + i;
    const imalog::Entry& e = entries[i];
    if (e.is_violation()) {
      Reason r = reason("violation-record", "the host log holds a violation record");
      r.entry = index;
      findings.push_back({Status::kContraindicated, std::move(r)});
      continue;
    }
    auto fields = imalog::parse_fields(e);
    if (!fields) {
      Reason r = reason("log-malformed", "host log entry: " + fields.error().message());
      r.entry = index;
      findings.push_back({Status::kContraindicated, std::move(r)});
      continue;
    }
    std::string name = record_name(e, *fields);
    std::string digest;
    if (auto d = fields->file_digest_value())
      digest = std::string(crypto::hash_name(d->alg)) + ":" + d->hex();
    if (name == "ctrustd") {
      check_ref(refs.agent_binaries, digest, "the ctrustd binary", index);
    } else if (name == "ctrustd-config") {
      check_ref(refs.agent_configs, digest, "ctrustd's configuration", index);
    } else if (name.rfind("ctrust-bpf:", 0) == 0) {
      if (!refs.bpf_objects.empty()) check_ref(refs.bpf_objects, digest, name, index);
    } else if (name.rfind("ctrust-policy:", 0) == 0) {
      // The policies the agent loaded: what each container enforces is in its own records.
    } else if (e.template_name == "ima-buf" && name.rfind("ctrust:", 0) == 0) {
      auto doc = record_json(*fields);
      if (!doc || !doc->is_object()) {
        Reason r = reason("log-malformed", "host record " + name + " is not a JSON object");
        r.entry = index;
        findings.push_back({Status::kContraindicated, std::move(r)});
        continue;
      }
      std::string event = json_string(*doc, "event");
      std::string id = json_string(*doc, "container");
      if (name == "ctrust:agent-start") {
        ++host.agent_starts;
        if (host.agent_starts > 1) {
          Reason r = reason("agent-restart", "ctrustd restarted (agent-start record)");
          r.entry = index;
          findings.push_back({Status::kWarning, std::move(r)});
        }
      } else if (name == "ctrust:container-created" && !id.empty()) {
        ContainerState fresh;
        fresh.id = id;
        auto ak = from_hex(json_string(*doc, "vtpm_ak_name"));
        if (ak) fresh.ak_name = *ak;
        fresh.image = json_string(*doc, "image");
        fresh.logged_policy = json_string(*doc, "policy");
        fresh.mode = json_string(*doc, "mode");
        fresh.host_entry = index;
        containers[id] = std::move(fresh);  // a new container of a reused name starts anew
        container_findings.erase(id);
      } else if (name == "ctrust:container-stopped" && !id.empty()) {
        auto it = containers.find(id);
        if (it != containers.end()) it->second.stopped = true;
      } else if (name == "ctrust:agent-gap" && !id.empty()) {
        Reason r = reason("agent-gap",
                          "container " + id + " ran while no agent watched it (agent restart)");
        r.entry = index;
        container_findings[id].push_back({Status::kContraindicated, std::move(r)});
      } else {
        Reason r = reason("unknown-record", "unknown host record " + printable(name));
        r.entry = index;
        findings.push_back({Status::kWarning, std::move(r)});
      }
      (void)event;
    } else {
      Reason r = reason("unknown-record", "unknown host record " + printable(name));
      r.entry = index;
      findings.push_back({Status::kWarning, std::move(r)});
    }
  }
}

// Judges the new entries of one container log.
void judge_container_entries(const std::vector<imalog::Entry>& entries, std::uint64_t first,
                             ContainerState& st, const std::optional<PolicyChoice>& policy,
                             const std::optional<Bytes>& boot_aggregate,
                             std::vector<Finding>& findings) {
  for (std::size_t i = 0; i < entries.size(); ++i) {
    std::uint64_t index = first + i;
    const imalog::Entry& e = entries[i];
    auto add = [&](Status s, std::string code, std::string message, const std::string& path = "",
                   std::string rule = "") {
      Reason r = reason(std::move(code), std::move(message));
      r.entry = index;
      r.rule = std::move(rule);
      (void)path;
      findings.push_back({s, std::move(r)});
    };
    if (e.is_violation()) {
      auto f = imalog::parse_fields(e);
      std::string name = f ? std::string(f->name) : "";
      if (name == "ctrust:agent-gap") {
        add(Status::kContraindicated, "agent-gap",
            "the container ran while no agent watched it (violation record)", name,
            "violation-record");
      } else {
        add(Status::kContraindicated, "violation-record",
            "violation record for " + printable(name) +
                ": the agent could not vouch that what ran is what it measured",
            name, "violation-record");
      }
      continue;
    }
    auto fields = imalog::parse_fields(e);
    if (!fields) {
      add(Status::kContraindicated, "log-malformed", fields.error().message());
      continue;
    }
    std::string_view name = fields->name;
    auto digest = fields->file_digest_value();
    // Only for messages and the records that name digests: not on the hot path of an
    // allowed file.
    auto text_of = [&] {
      return digest ? std::string(crypto::hash_name(digest->alg)) + ":" + digest->hex()
                    : std::string();
    };
    if (index == 0) {
      if (name != "boot_aggregate") {
        add(Status::kContraindicated, "boot-aggregate",
            "the log's first entry is " + printable(name) + ", not boot_aggregate");
      } else if (boot_aggregate &&
                 (!digest || !std::equal(digest->view().begin(), digest->view().end(),
                                         boot_aggregate->begin(), boot_aggregate->end()))) {
        add(Status::kContraindicated, "boot-aggregate",
            "boot_aggregate " + text_of() + " does not match the host's quoted PCRs 0-9 (sha256:" +
                to_hex(*boot_aggregate) + ")");
      }
      ++st.skipped;
      continue;
    }
    if (name == "ctrust:image") {
      std::string image = text_of();
      if (image != st.image) {
        add(Status::kContraindicated, "image-mismatch",
            "the log's image " + image + " is not the host log's " + st.image);
      } else if (policy && !policy->images.empty() && !listed(policy->images, image)) {
        add(Status::kContraindicated, "image-not-in-policy",
            "image " + text_of() + " is not listed by policy " + policy->name, "", "policy.images");
      }
      ++st.skipped;
      continue;
    }
    if (name.substr(0, 14) == "ctrust:policy:") {
      if (text_of() != st.logged_policy) {
        add(Status::kContraindicated, "policy-mismatch",
            "the log's policy " + text_of() + " is not the host log's " + st.logged_policy);
      } else if (policy && policy->digest != text_of()) {
        add(Status::kWarning, "policy-differs",
            "the agent enforces " + std::string(name.substr(14)) + " (" + text_of() +
                "); the verifier judges by " + policy->name + " (" + policy->digest + ")");
      }
      ++st.skipped;
      continue;
    }
    if (e.template_name == "ima-buf") {
      ++st.skipped;
      continue;
    }
    if (!digest) {
      add(Status::kContraindicated, "log-malformed", "entry has no usable file digest");
      continue;
    }
    if (!policy) {
      ++st.skipped;
      continue;
    }
    if (fields->digest_type == "verity") {
      add(Status::kContraindicated, "unknown-digest",
          printable(name) + ": an fs-verity digest where a file digest is expected",
          std::string(name), "unknown-digest");
      continue;
    }
    switch (policy->compiled->check(*digest, name)) {
      case policy::Verdict::kAllowed:
        ++st.allowed;
        break;
      case policy::Verdict::kExcluded:
        ++st.excluded;
        break;
      case policy::Verdict::kUnknownDigest:
        add(Status::kContraindicated, "unknown-digest",
            printable(name, 256) + " (" + text_of() + ") is not allowed by policy " + policy->name,
            std::string(name), "unknown-digest");
        break;
      case policy::Verdict::kWrongPath:
        add(Status::kContraindicated, "wrong-path",
            printable(name, 256) + " (" + text_of() + ") is allowed by policy " + policy->name +
                " only at other paths",
            std::string(name), "wrong-path");
        break;
    }
  }
}

Status status_of(const std::vector<Finding>& findings, Status base) {
  Status s = base;
  for (const auto& f : findings) s = worse_of(s, f.status);
  return s;
}

// Findings about log entries stay with the log (the entry stays in it): contraindicated
// ones in `sticky`, warnings in `warnings`. Findings about one attestation (a quote, the
// transport) are contraindicated and sticky too; other warnings hold for one round.
void keep_sticky(std::vector<Reason>& sticky, std::vector<Reason>& warnings,
                 const std::vector<Finding>& findings) {
  for (const auto& f : findings) {
    if (f.status == Status::kContraindicated) {
      if (sticky.size() < kMaxReasons) sticky.push_back(f.reason);
    } else if (f.status == Status::kWarning && f.reason.entry) {
      if (warnings.size() < kMaxReasons) warnings.push_back(f.reason);
    }
  }
}

std::vector<Reason> reasons_of(const std::vector<Finding>& findings) {
  std::vector<Reason> out;
  for (const auto& f : findings) {
    if (out.size() >= kMaxReasons * 4) break;
    out.push_back(f.reason);
  }
  return out;
}

json reasons_json(const std::vector<Reason>& reasons) {
  json out = json::array();
  for (const auto& r : reasons) out.push_back(r.to_json());
  return out;
}

Result<std::vector<Reason>> reasons_from(const json& value) {
  std::vector<Reason> out;
  if (!value.is_array()) return Error(Errc::kFormat, "reasons must be an array");
  for (const auto& v : value) {
    if (!v.is_object()) return Error(Errc::kFormat, "a reason must be an object");
    Reason r;
    r.code = json_string(v, "code");
    r.message = json_string(v, "message");
    r.rule = json_string(v, "rule");
    r.quote = json_string(v, "quote");
    if (v.contains("entry") && v["entry"].is_number_unsigned()) {
      r.entry = v["entry"].get<std::uint64_t>();
    }
    out.push_back(std::move(r));
  }
  return out;
}

Result<LogState> log_state_from(const json& v) {
  LogState s;
  if (!v.is_object() || !v.contains("offset") || !v["offset"].is_number_unsigned() ||
      !v.contains("pcr") || !v["pcr"].is_string()) {
    return Error(Errc::kFormat, "log state must have offset and pcr");
  }
  s.offset = v["offset"].get<std::uint64_t>();
  CTRUST_ASSIGN_OR_RETURN(s.pcr, from_hex(v["pcr"].get<std::string>()));
  if (s.pcr.size() != 32) return Error(Errc::kFormat, "log state pcr must be 32 bytes");
  return s;
}

json log_state_json(const LogState& s) { return {{"offset", s.offset}, {"pcr", to_hex(s.pcr)}}; }

std::uint64_t uint_member(const json& v, const char* key) {
  auto it = v.find(key);
  return it != v.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

}  // namespace

Result<crypto::PublicKey> ak_public_key(ByteView tpm2b_public) {
  static std::mutex mutex;
  static std::map<Bytes, crypto::PublicKey> cache;
  Bytes key(tpm2b_public.begin(), tpm2b_public.end());
  {
    std::lock_guard lock(mutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  CTRUST_ASSIGN_OR_RETURN(tpm::TpmPublic area, tpm::TpmPublic::from_tpm2b(tpm2b_public));
  if (!area.is_restricted_signing()) {
    return Error(Errc::kInvalidArgument, "the key is not a restricted signing key");
  }
  CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey pub, area.public_key());
  std::lock_guard lock(mutex);
  if (cache.size() >= 65536) cache.clear();
  cache.emplace(std::move(key), pub);
  return pub;
}

json ContainerState::to_json() const {
  return {{"id", id},
          {"ak_name", to_hex(ak_name)},
          {"image", image},
          {"logged_policy", logged_policy},
          {"mode", mode},
          {"host_entry", host_entry},
          {"stopped", stopped},
          {"log", log_state_json(log)},
          {"last_quote_time", last_quote_time},
          {"status", status_name(status)},
          {"reasons", reasons_json(reasons)},
          {"warnings", reasons_json(warnings)},
          {"policy", policy},
          {"allowed", allowed},
          {"excluded", excluded},
          {"skipped", skipped}};
}

Result<ContainerState> ContainerState::from_json(const json& v) {
  if (!v.is_object()) return Error(Errc::kFormat, "container state must be an object");
  ContainerState s;
  s.id = json_string(v, "id");
  CTRUST_ASSIGN_OR_RETURN(s.ak_name, from_hex(json_string(v, "ak_name")));
  s.image = json_string(v, "image");
  s.logged_policy = json_string(v, "logged_policy");
  s.mode = json_string(v, "mode");
  s.host_entry = uint_member(v, "host_entry");
  s.stopped = v.value("stopped", false);
  CTRUST_ASSIGN_OR_RETURN(s.log, log_state_from(v.value("log", json::object())));
  s.last_quote_time = v.value("last_quote_time", std::int64_t{0});
  auto st = parse_status(json_string(v, "status"));
  if (!st) return Error(Errc::kFormat, "container state has no valid status");
  s.status = *st;
  CTRUST_ASSIGN_OR_RETURN(s.reasons, reasons_from(v.value("reasons", json::array())));
  CTRUST_ASSIGN_OR_RETURN(s.warnings, reasons_from(v.value("warnings", json::array())));
  s.policy = json_string(v, "policy");
  s.allowed = uint_member(v, "allowed");
  s.excluded = uint_member(v, "excluded");
  s.skipped = uint_member(v, "skipped");
  return s;
}

json HostState::to_json() const {
  return {{"log", log_state_json(log)},
          {"agent_instance", agent_instance},
          {"reset_count", reset_count},
          {"restart_count", restart_count},
          {"clock", clock},
          {"quoted", quoted},
          {"agent_starts", agent_starts},
          {"status", status_name(status)},
          {"reasons", reasons_json(reasons)},
          {"warnings", reasons_json(warnings)}};
}

Result<HostState> HostState::from_json(const json& v) {
  if (!v.is_object()) return Error(Errc::kFormat, "host state must be an object");
  HostState s;
  if (v.empty()) return s;
  CTRUST_ASSIGN_OR_RETURN(s.log, log_state_from(v.value("log", json::object())));
  s.agent_instance = json_string(v, "agent_instance");
  s.reset_count = static_cast<std::uint32_t>(uint_member(v, "reset_count"));
  s.restart_count = static_cast<std::uint32_t>(uint_member(v, "restart_count"));
  s.clock = uint_member(v, "clock");
  s.quoted = v.value("quoted", false);
  s.agent_starts = uint_member(v, "agent_starts");
  auto st = parse_status(json_string(v, "status"));
  if (!st) return Error(Errc::kFormat, "host state has no valid status");
  s.status = *st;
  CTRUST_ASSIGN_OR_RETURN(s.reasons, reasons_from(v.value("reasons", json::array())));
  CTRUST_ASSIGN_OR_RETURN(s.warnings, reasons_from(v.value("warnings", json::array())));
  return s;
}

Result<Challenge> make_challenge(const HostState& host,
                                 const std::map<std::string, ContainerState>& containers) {
  Challenge c;
  c.nonce.resize(kNonceBytes);
  if (RAND_bytes(c.nonce.data(), static_cast<int>(c.nonce.size())) != 1) {
    return Error(Errc::kCrypto, "no random bytes for a nonce");
  }
  c.host_log_offset = host.log.offset;
  c.all = true;
  for (const auto& [id, st] : containers) {
    if (c.containers.size() >= kMaxContainers) break;
    c.containers.push_back({id, st.log.offset});
  }
  return c;
}

Result<AttestationOutcome> verify_attestation(HostState& host,
                                              std::map<std::string, ContainerState>& containers,
                                              const AttestationInput& in) {
  if (in.challenge == nullptr || in.evidence == nullptr || in.host == nullptr ||
      in.refs == nullptr) {
    return Error(Errc::kInvalidArgument, "verify_attestation: missing input");
  }
  const Challenge& ch = *in.challenge;
  const Evidence& ev = *in.evidence;
  AttestationOutcome out;
  std::vector<Finding> host_findings;
  std::map<std::string, std::vector<Finding>> container_findings;
  std::map<std::string, Status> before;
  for (const auto& [id, st] : containers) before[id] = st.status;
  Status host_before = host.status;

  // 1. The host quote, bound to the nonce, the host log length and the container quotes.
  tpm::Attestation host_att;
  Bytes binding = host_qualifying_data(ch.nonce, ev.host_log.count, ev.containers);
  std::vector<Finding> quote_findings =
      check_quote(in.host->ak, ev.host_quote, binding, "host quote", &host_att);
  bool host_ok = quote_findings.empty();
  host_findings.insert(host_findings.end(), quote_findings.begin(), quote_findings.end());
  auto host_pcr = quoted_pcr(ev.host_quote, in.host->host_pcr);
  if (host_ok && !host_pcr) {
    host_findings.push_back(
        {Status::kContraindicated, reason("quote", "the host quote does not cover PCR " +
                                                       std::to_string(in.host->host_pcr))});
    host_ok = false;
  }
  // Boot PCRs: the boot aggregate of new containers, and the reference values.
  std::optional<Bytes> boot_aggregate;
  {
    Bytes concat;
    bool all = true;
    for (unsigned i = 0; i <= 9; ++i) {
      auto v = quoted_pcr(ev.host_quote, i);
      if (!v) {
        all = false;
        break;
      }
      concat.insert(concat.end(), v->begin(), v->end());
      auto ref = in.refs->boot_pcrs.find(i);
      if (host_ok && ref != in.refs->boot_pcrs.end() && ref->second != *v) {
        host_findings.push_back(
            {Status::kContraindicated,
             reason("reference-value", "host PCR " + std::to_string(i) + " is " + to_hex(*v) +
                                           ", not the reference value " + to_hex(ref->second))});
      }
    }
    if (all) {
      Bytes digest(32);
      unsigned int len = 0;
      EVP_Digest(concat.data(), concat.size(), digest.data(), &len, EVP_sha256(), nullptr);
      boot_aggregate = digest;
    }
  }

  // TPM counters: a reboot resets the host log; anything going back is a replay.
  bool reset = false;
  if (host_ok && host.quoted) {
    if (host_att.reset_count < host.reset_count ||
        (host_att.reset_count == host.reset_count &&
         (host_att.restart_count < host.restart_count || host_att.clock < host.clock))) {
      host_findings.push_back(
          {Status::kContraindicated,
           reason("replayed-quote", "the host TPM's clock or counters went back (reset " +
                                        std::to_string(host_att.reset_count) + ", clock " +
                                        std::to_string(host_att.clock) + "): an old quote")});
      host_ok = false;
    } else if (host_att.reset_count > host.reset_count) {
      reset = true;
      host_findings.push_back(
          {Status::kWarning, reason("tpm-reset", "the host rebooted (TPM reset count " +
                                                     std::to_string(host_att.reset_count) +
                                                     "); its log starts anew")});
    }
  }
  if (host_ok && !host.agent_instance.empty() && ev.agent_instance != host.agent_instance) {
    host_findings.push_back(
        {Status::kWarning,
         reason("agent-restart", "ctrustd restarted since the last attestation (instance " +
                                     printable(ev.agent_instance) + ")")});
  }

  // 2. The host log's new entries, replayed from the held PCR value.
  std::vector<imalog::Entry> host_entries;
  LogState host_log = reset ? LogState{} : host.log;
  if (host_ok) {
    if (ev.host_log.offset != host_log.offset && reset) {
      // The host rebooted and the agent answered from the old offset: start the new boot's
      // books now (its containers are gone), and fetch its log from the start next round.
      for (const auto& [id, st] : containers) out.dropped.push_back(id);
      containers.clear();
      Status status_before = host.status;
      host = HostState{};
      host.reset_count = host_att.reset_count;
      host.restart_count = host_att.restart_count;
      host.clock = host_att.clock;
      host.quoted = true;
      host.agent_instance = ev.agent_instance;
      host.status = Status::kWarning;
      out.host_status = host.status;
      out.host_reasons = reasons_of(host_findings);
      out.host_changed = host.status != status_before;
      return out;
    }
    if (ev.host_log.offset != host_log.offset) {
      host_findings.push_back(
          {Status::kContraindicated,
           reason("log-offset", "the host log starts at entry " +
                                    std::to_string(ev.host_log.offset) + ", the verifier holds " +
                                    std::to_string(host_log.offset))});
      host_ok = false;
    } else {
      auto read = read_chunk(ev.host_log, "host log");
      if (!read) {
        host_findings.push_back(
            {Status::kContraindicated, reason("log-malformed", read.error().message())});
        host_ok = false;
      } else {
        host_entries = std::move(*read);
      }
    }
  }
  if (host_ok) {
    Extender ext;
    Bytes pcr = host_log.pcr;
    for (std::size_t i = 0; i < host_entries.size() && host_ok; ++i) {
      if (host_entries[i].pcr != in.host->host_pcr) {
        Reason r = reason("log-malformed",
                          "host log entry names PCR " + std::to_string(host_entries[i].pcr));
        r.entry = ev.host_log.offset + i;
        host_findings.push_back({Status::kContraindicated, std::move(r)});
        host_ok = false;
        break;
      }
      auto x = ext.extend(pcr, host_entries[i]);
      if (!x) return std::move(x).error();
    }
    if (host_ok && pcr != *host_pcr) {
      host_findings.push_back(
          {Status::kContraindicated,
           reason("log-replay", "the host log (entries " + std::to_string(ev.host_log.offset) +
                                    "-" + std::to_string(ev.host_log.count) +
                                    ") does not replay to the quoted PCR " +
                                    std::to_string(in.host->host_pcr) +
                                    ": an entry was changed, dropped, reordered or withheld")});
      host_ok = false;
    }
    if (host_ok) {
      if (reset) {
        // A new boot: the old containers and what the old log said are gone with it.
        for (const auto& [id, st] : containers) out.dropped.push_back(id);
        containers.clear();
        host.agent_starts = 0;
        host.reasons.clear();
        host.warnings.clear();
      }
      process_host_records(host_entries, ev.host_log.offset, *in.refs, host, containers,
                           host_findings, container_findings);
      host.log = {ev.host_log.count, pcr};
      host.reset_count = host_att.reset_count;
      host.restart_count = host_att.restart_count;
      host.clock = host_att.clock;
      host.quoted = true;
      host.agent_instance = ev.agent_instance;
      out.entries_verified += host_entries.size();
    }
  }
  keep_sticky(host.reasons, host.warnings, host_findings);
  host.status = status_of(host_findings, Status::kAffirming);
  if (!host.warnings.empty()) host.status = worse_of(host.status, Status::kWarning);
  if (!host.reasons.empty()) host.status = worse_of(host.status, Status::kContraindicated);
  out.host_status = host.status;
  out.host_reasons = reasons_of(host_findings);
  out.host_changed = host.status != host_before;

  // 3. Each container the agent reported.
  std::map<std::string, bool> reported;
  std::map<std::string, std::uint64_t> new_entries;
  for (const auto& c : ev.containers) {
    reported[c.id] = true;
    std::vector<Finding>& findings = container_findings[c.id];
    auto it = containers.find(c.id);
    if (it == containers.end() || it->second.ak_name.empty()) {
      if (it == containers.end()) {
        ContainerState unbound;
        unbound.id = c.id;
        containers.emplace(c.id, std::move(unbound));
      }
      if (host_ok) {
        findings.push_back(
            {Status::kContraindicated,
             reason("unbound-container", "container " + c.id +
                                             " has no container-created record in the host "
                                             "log: nothing binds its vTPM to this host")});
      } else {
        findings.push_back({Status::kContraindicated,
                            reason("host-evidence", "the host's evidence does not verify")});
      }
      continue;
    }
    ContainerState& st = it->second;
    if (!host_ok) {
      findings.push_back({Status::kContraindicated,
                          reason("host-evidence", "the host's evidence does not verify")});
      continue;
    }
    if (c.log.offset != st.log.offset && st.log.offset == 0 &&
        st.host_entry >= ev.host_log.offset) {
      // Created (or created again, under a reused name) by a record of this very round: the
      // challenge asked for the old log's offset. The next round asks from the start.
      findings.push_back(
          {Status::kWarning, reason("log-restarted", "container " + c.id +
                                                         " was created anew; its log is fetched "
                                                         "from the start next round")});
      continue;
    }
    if (c.log.offset != st.log.offset) {
      findings.push_back(
          {Status::kContraindicated,
           reason("log-offset", "the log starts at entry " + std::to_string(c.log.offset) +
                                    ", the verifier holds " + std::to_string(st.log.offset))});
      continue;
    }
    auto entries = read_chunk(c.log, "container log");
    if (!entries) {
      findings.push_back(
          {Status::kContraindicated, reason("log-malformed", entries.error().message())});
      continue;
    }
    if (!c.quote) {
      // Stopped: its vTPM is gone; what it logged after the last quote cannot be vouched for.
      if (!entries->empty()) {
        findings.push_back(
            {Status::kWarning,
             reason("unquoted-entries", std::to_string(entries->size()) +
                                            " entries logged after the last quote of this "
                                            "container cannot be verified (it stopped)")});
      }
      continue;
    }
    // The AK must be the one the host log bound to this container.
    auto ak_public = tpm::TpmPublic::from_tpm2b(c.ak_public);
    Result<Bytes> name = ak_public ? ak_public->name() : Result<Bytes>(ak_public.error());
    if (!name || *name != st.ak_name) {
      findings.push_back(
          {Status::kContraindicated,
           reason("forged-binding", "the vTPM key sent for container " + c.id +
                                        " is not the one the host log bound to it (name " +
                                        (name ? to_hex(*name) : name.error().message()) + ")")});
      continue;
    }
    auto ak = ak_public_key(c.ak_public);
    if (!ak) {
      findings.push_back(
          {Status::kContraindicated,
           reason("forged-binding", "the vTPM key is not a restricted signing key")});
      continue;
    }
    std::vector<Finding> qf =
        check_quote(*ak, *c.quote, container_qualifying_data(ch.nonce, c.id, c.log.count),
                    "quote of container " + c.id, nullptr);
    auto pcr10 = quoted_pcr(*c.quote, kContainerPcr);
    if (qf.empty() && !pcr10) {
      qf.push_back(
          {Status::kContraindicated, reason("quote", "the container quote does not cover PCR 10")});
    }
    if (!qf.empty()) {
      findings.insert(findings.end(), qf.begin(), qf.end());
      continue;
    }
    Extender ext;
    Bytes pcr = st.log.pcr;
    bool good = true;
    for (const auto& e : *entries) {
      if (e.pcr != kContainerPcr) {
        findings.push_back(
            {Status::kContraindicated,
             reason("log-malformed", "container log entry names PCR " + std::to_string(e.pcr))});
        good = false;
        break;
      }
      auto x = ext.extend(pcr, e);
      if (!x) return std::move(x).error();
    }
    if (!good) continue;
    if (pcr != *pcr10) {
      findings.push_back(
          {Status::kContraindicated,
           reason("log-replay", "the log (entries " + std::to_string(c.log.offset) + "-" +
                                    std::to_string(c.log.count) +
                                    ") does not replay to the quoted PCR 10: an entry was "
                                    "changed, dropped, reordered or withheld")});
      continue;
    }
    std::optional<PolicyChoice> policy;
    if (in.policies) policy = in.policies(c.id, st.image, st.logged_policy);
    if (!policy) {
      findings.push_back(
          {Status::kWarning,
           reason("no-policy", "the verifier has no policy for container " + c.id + " (image " +
                                   st.image + "); its executables are not judged")});
    } else {
      st.policy = policy->name;
    }
    judge_container_entries(*entries, c.log.offset, st, policy, boot_aggregate, findings);
    st.log = {c.log.count, pcr};
    st.last_quote_time = in.now;
    out.entries_verified += entries->size();
    new_entries[c.id] = entries->size();
    if (c.state == "stopped") st.stopped = true;
  }
  // Containers the verifier knows and the agent did not report.
  std::set<std::string> unknown(ev.unknown.begin(), ev.unknown.end());
  for (auto& [id, st] : containers) {
    if (reported.contains(id) || !host_ok) continue;
    if (st.stopped) continue;
    const std::string& wanted = id;
    bool asked = std::any_of(ch.containers.begin(), ch.containers.end(),
                             [&wanted](const ContainerCursor& cc) { return cc.id == wanted; });
    if (!asked && !ch.all) continue;
    container_findings[id].push_back(
        {Status::kContraindicated,
         reason("missing-container", unknown.contains(id)
                                         ? "the agent says it has no container " + id +
                                               ", which the host log says is running"
                                         : "the agent did not report container " + id)});
  }

  for (auto& [id, st] : containers) {
    const std::vector<Finding>& findings = container_findings[id];
    keep_sticky(st.reasons, st.warnings, findings);
    Status s = status_of(findings, Status::kAffirming);
    if (!st.warnings.empty()) s = worse_of(s, Status::kWarning);
    if (!st.reasons.empty()) s = worse_of(s, Status::kContraindicated);
    if (!host_ok) s = worse_of(s, Status::kContraindicated);
    bool was_reported = reported.contains(id);
    if (!was_reported && findings.empty()) {
      // Not part of this round (stopped, or not asked about): unchanged.
      ContainerOutcome o;
      o.id = id;
      o.status = st.status;
      o.removed = st.stopped;
      out.containers.push_back(std::move(o));
      continue;
    }
    st.status = s;
    ContainerOutcome o;
    o.id = id;
    o.status = s;
    o.reasons = reasons_of(findings);
    auto b = before.find(id);
    o.changed = b == before.end() || b->second != s;
    o.removed = st.stopped;
    o.new_entries = new_entries[id];
    out.containers.push_back(std::move(o));
  }
  return out;
}

}  // namespace ctrust::attest
