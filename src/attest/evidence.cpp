#include "attest/evidence.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <set>

#include "crypto/digest.h"
#include "util/endian.h"
#include "util/json.h"
#include "util/text.h"

namespace ctrust::attest {

using nlohmann::json;

namespace {

constexpr std::size_t kMaxDepth = 8;

// A strict reader of one JSON object: every member is read once by name with its type
// checked; finish() rejects members nobody asked for.
class ObjectReader {
 public:
  ObjectReader(const json& value, std::string path) : value_(value), path_(std::move(path)) {}

  Result<void> check_object() const {
    if (!value_.is_object()) return fail(path_, "must be an object");
    return ok_result();
  }
  bool has(const std::string& key) const { return value_.contains(key); }

  Result<const json*> member(const std::string& key, bool required) {
    seen_.insert(key);
    auto it = value_.find(key);
    if (it == value_.end()) {
      if (required) return fail(path_ + "." + key, "is missing");
      return static_cast<const json*>(nullptr);
    }
    return &*it;
  }

  Result<std::string> string(const std::string& key, std::size_t max_len, bool required = true) {
    CTRUST_ASSIGN_OR_RETURN(const json* v, member(key, required));
    if (v == nullptr) return std::string();
    if (!v->is_string()) return fail(path_ + "." + key, "must be a string");
    const auto& s = v->get_ref<const std::string&>();
    if (s.size() > max_len) {
      return Error(Errc::kLimit,
                   path_ + "." + key + " is longer than " + std::to_string(max_len) + " bytes");
    }
    return s;
  }

  Result<std::uint64_t> uint(const std::string& key, bool required = true) {
    CTRUST_ASSIGN_OR_RETURN(const json* v, member(key, required));
    if (v == nullptr) return std::uint64_t{0};
    if (!v->is_number_unsigned()) return fail(path_ + "." + key, "must be an unsigned integer");
    return v->get<std::uint64_t>();
  }

  Result<std::int64_t> int64(const std::string& key, bool required = true) {
    CTRUST_ASSIGN_OR_RETURN(const json* v, member(key, required));
    if (v == nullptr) return std::int64_t{0};
    if (!v->is_number_integer()) return fail(path_ + "." + key, "must be an integer");
    if (v->is_number_unsigned() && v->get<std::uint64_t>() > INT64_MAX) {
      return fail(path_ + "." + key, "is out of range");
    }
    return v->get<std::int64_t>();
  }

  Result<bool> boolean(const std::string& key, bool required = true) {
    CTRUST_ASSIGN_OR_RETURN(const json* v, member(key, required));
    if (v == nullptr) return false;
    if (!v->is_boolean()) return fail(path_ + "." + key, "must be true or false");
    return v->get<bool>();
  }

  Result<Bytes> b64(const std::string& key, std::size_t max_bytes, bool required = true) {
    CTRUST_ASSIGN_OR_RETURN(std::string s, string(key, (max_bytes + 2) / 3 * 4, required));
    auto decoded = base64_decode(s, max_bytes);
    if (!decoded) return fail(path_ + "." + key, decoded.error().message());
    return decoded;
  }

  Result<Bytes> hex(const std::string& key, std::size_t size) {
    CTRUST_ASSIGN_OR_RETURN(std::string s, string(key, size * 2));
    return hex_value(path_ + "." + key, s, size);
  }

  Result<const json*> array(const std::string& key, std::size_t max_items, bool required = true) {
    CTRUST_ASSIGN_OR_RETURN(const json* v, member(key, required));
    if (v == nullptr) return v;
    if (!v->is_array()) return fail(path_ + "." + key, "must be an array");
    if (v->size() > max_items) {
      return Error(Errc::kLimit,
                   path_ + "." + key + " has more than " + std::to_string(max_items) + " items");
    }
    return v;
  }

  Result<void> finish() const {
    for (const auto& [key, v] : value_.items()) {
      (void)v;
      if (!seen_.contains(key)) return fail(path_ + "." + printable(key), "is not a known member");
    }
    return ok_result();
  }

  const std::string& path() const { return path_; }

  static Error fail(const std::string& where, const std::string& what) {
    return Error(Errc::kFormat, where + " " + what);
  }

  static Result<Bytes> hex_value(const std::string& where, const std::string& s, std::size_t size) {
    if (s.size() != size * 2) {
      return fail(where, "must be " + std::to_string(size * 2) + " lowercase hex digits");
    }
    for (char c : s) {
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
        return fail(where, "must be lowercase hex");
      }
    }
    return from_hex(s);
  }

 private:
  const json& value_;
  std::string path_;
  std::set<std::string> seen_;
};

Result<json> parse_document(std::string_view text, std::size_t max_bytes, const char* what) {
  if (text.size() > max_bytes) {
    return Error(Errc::kLimit,
                 std::string(what) + " is larger than " + std::to_string(max_bytes) + " bytes");
  }
  auto doc = parse_json_strict(text, kMaxDepth);
  if (!doc) return std::move(doc).error().with_context(what);
  return doc;
}

Result<void> check_version(ObjectReader& r) {
  CTRUST_ASSIGN_OR_RETURN(std::uint64_t version, r.uint("version"));
  if (version != kProtocolVersion) {
    return Error(Errc::kUnsupported, r.path() + ".version " + std::to_string(version) +
                                         " is not supported (this side speaks " +
                                         std::to_string(kProtocolVersion) + ")");
  }
  return ok_result();
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLen || id[0] == '.') return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

Result<std::string> read_id(ObjectReader& r, const std::string& key) {
  CTRUST_ASSIGN_OR_RETURN(std::string id, r.string(key, kMaxIdLen));
  if (!valid_id(id)) {
    return ObjectReader::fail(r.path() + "." + key, "is not a valid id ([A-Za-z0-9_.-], 1-128)");
  }
  return id;
}

json quote_json(const QuoteEvidence& q) {
  json pcrs = json::object();
  for (const auto& [index, value] : q.pcrs) pcrs[std::to_string(index)] = to_hex(value);
  return {{"message", base64_encode(q.message)},
          {"signature", base64_encode(q.signature)},
          {"pcrs", {{"sha256", pcrs}}}};
}

Result<QuoteEvidence> read_quote(const json& value, const std::string& path) {
  ObjectReader r(value, path);
  CTRUST_TRY(r.check_object());
  QuoteEvidence q;
  CTRUST_ASSIGN_OR_RETURN(q.message, r.b64("message", kMaxQuoteBytes));
  CTRUST_ASSIGN_OR_RETURN(q.signature, r.b64("signature", kMaxQuoteBytes));
  CTRUST_ASSIGN_OR_RETURN(const json* pcrs, r.member("pcrs", true));
  CTRUST_TRY(r.finish());
  ObjectReader banks(*pcrs, path + ".pcrs");
  CTRUST_TRY(banks.check_object());
  CTRUST_ASSIGN_OR_RETURN(const json* sha256, banks.member("sha256", true));
  CTRUST_TRY(banks.finish());
  if (!sha256->is_object()) return ObjectReader::fail(path + ".pcrs.sha256", "must be an object");
  for (const auto& [key, v] : sha256->items()) {
    std::string where = path + ".pcrs.sha256." + printable(key);
    if (key.empty() || key.size() > 2 || !std::all_of(key.begin(), key.end(), ::isdigit) ||
        (key.size() == 2 && key[0] == '0')) {
      return ObjectReader::fail(where, "is not a PCR index");
    }
    auto index = static_cast<unsigned>(std::stoul(key));
    if (index > 23) return ObjectReader::fail(where, "is not a PCR index (0-23)");
    if (!v.is_string()) return ObjectReader::fail(where, "must be a string");
    CTRUST_ASSIGN_OR_RETURN(Bytes value_bytes,
                            ObjectReader::hex_value(where, v.get<std::string>(), 32));
    q.pcrs.emplace_back(index, std::move(value_bytes));
  }
  std::sort(q.pcrs.begin(), q.pcrs.end());
  return q;
}

json log_json(const LogChunk& log) {
  return {{"offset", log.offset}, {"count", log.count}, {"entries", base64_encode(log.entries)}};
}

Result<LogChunk> read_log(const json& value, const std::string& path) {
  ObjectReader r(value, path);
  CTRUST_TRY(r.check_object());
  LogChunk log;
  CTRUST_ASSIGN_OR_RETURN(log.offset, r.uint("offset"));
  CTRUST_ASSIGN_OR_RETURN(log.count, r.uint("count"));
  CTRUST_ASSIGN_OR_RETURN(log.entries, r.b64("entries", kMaxLogChunkBytes));
  CTRUST_TRY(r.finish());
  if (log.offset > log.count) {
    return ObjectReader::fail(path, "offset is beyond the log's count");
  }
  if (log.offset == log.count && !log.entries.empty()) {
    return ObjectReader::fail(path, "has entries but no new ones are counted");
  }
  return log;
}

void put_u32(Bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}
void put_u64(Bytes& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}
void put_text(Bytes& out, std::string_view s) { out.insert(out.end(), s.begin(), s.end()); }

Bytes sha256(ByteView data) {
  Bytes out(32);
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

}  // namespace

std::string base64_encode(ByteView bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  if (!bytes.empty()) {
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                            static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
  }
  return out;
}

Result<Bytes> base64_decode(std::string_view text, std::size_t max_bytes) {
  if (text.size() % 4 != 0) return Error(Errc::kFormat, "base64 length is not a multiple of 4");
  if (text.size() / 4 * 3 > max_bytes + 2) {
    return Error(Errc::kLimit,
                 "base64 data is larger than " + std::to_string(max_bytes) + " bytes");
  }
  std::size_t pad = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '+' || c == '/';
    if (c == '=') {
      if (i + 2 < text.size()) return Error(Errc::kFormat, "base64 padding in the middle");
      ++pad;
    } else if (!alpha || pad > 0) {
      return Error(Errc::kFormat, "base64 data holds a character outside the alphabet");
    }
  }
  Bytes out(text.size() / 4 * 3);
  if (!text.empty()) {
    int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                            static_cast<int>(text.size()));
    if (n < 0) return Error(Errc::kFormat, "base64 data does not decode");
    out.resize(static_cast<std::size_t>(n) - pad);
  }
  if (out.size() > max_bytes) {
    return Error(Errc::kLimit,
                 "base64 data is larger than " + std::to_string(max_bytes) + " bytes");
  }
  // Canonical: unused bits must be zero, so that one value has one spelling.
  if (base64_encode(out) != text) return Error(Errc::kFormat, "base64 data is not canonical");
  return out;
}

json to_json(const Challenge& c) {
  json containers = json::array();
  for (const auto& cc : c.containers) {
    containers.push_back({{"id", cc.id}, {"log_offset", cc.log_offset}});
  }
  return {{"version", kProtocolVersion},
          {"nonce", to_hex(c.nonce)},
          {"host_log_offset", c.host_log_offset},
          {"containers", containers},
          {"all", c.all}};
}

Result<Challenge> parse_challenge(std::string_view text) {
  CTRUST_ASSIGN_OR_RETURN(json doc, parse_document(text, kMaxChallengeBytes, "challenge"));
  ObjectReader r(doc, "challenge");
  CTRUST_TRY(r.check_object());
  CTRUST_TRY(check_version(r));
  Challenge c;
  CTRUST_ASSIGN_OR_RETURN(c.nonce, r.hex("nonce", kNonceBytes));
  CTRUST_ASSIGN_OR_RETURN(c.host_log_offset, r.uint("host_log_offset"));
  CTRUST_ASSIGN_OR_RETURN(const json* containers, r.array("containers", kMaxContainers));
  CTRUST_ASSIGN_OR_RETURN(c.all, r.boolean("all", false));
  CTRUST_TRY(r.finish());
  std::set<std::string> seen;
  for (std::size_t i = 0; i < containers->size(); ++i) {
    ObjectReader cr((*containers)[i], "challenge.containers[" + std::to_string(i) + "]");
    CTRUST_TRY(cr.check_object());
    ContainerCursor cursor;
    CTRUST_ASSIGN_OR_RETURN(cursor.id, read_id(cr, "id"));
    CTRUST_ASSIGN_OR_RETURN(cursor.log_offset, cr.uint("log_offset"));
    CTRUST_TRY(cr.finish());
    if (!seen.insert(cursor.id).second) {
      return ObjectReader::fail(cr.path(), "names container " + cursor.id + " twice");
    }
    c.containers.push_back(std::move(cursor));
  }
  return c;
}

json to_json(const Evidence& e) {
  json containers = json::array();
  for (const auto& c : e.containers) {
    json item = {{"id", c.id}, {"state", c.state}, {"log", log_json(c.log)}};
    if (!c.ak_public.empty()) item["ak_public"] = base64_encode(c.ak_public);
    if (c.quote) item["quote"] = quote_json(*c.quote);
    containers.push_back(std::move(item));
  }
  return {{"version", e.version},
          {"agent", {{"instance", e.agent_instance}, {"started", e.agent_started}}},
          {"host", {{"quote", quote_json(e.host_quote)}, {"log", log_json(e.host_log)}}},
          {"containers", containers},
          {"unknown", e.unknown}};
}

Result<Evidence> parse_evidence(std::string_view text) {
  CTRUST_ASSIGN_OR_RETURN(json doc, parse_document(text, kMaxEvidenceBytes, "evidence"));
  ObjectReader r(doc, "evidence");
  CTRUST_TRY(r.check_object());
  CTRUST_TRY(check_version(r));
  Evidence e;
  CTRUST_ASSIGN_OR_RETURN(const json* agent, r.member("agent", true));
  CTRUST_ASSIGN_OR_RETURN(const json* host, r.member("host", true));
  CTRUST_ASSIGN_OR_RETURN(const json* containers, r.array("containers", kMaxContainers));
  CTRUST_ASSIGN_OR_RETURN(const json* unknown, r.array("unknown", kMaxContainers));
  CTRUST_TRY(r.finish());

  ObjectReader ar(*agent, "evidence.agent");
  CTRUST_TRY(ar.check_object());
  CTRUST_ASSIGN_OR_RETURN(e.agent_instance, ar.string("instance", 64));
  CTRUST_ASSIGN_OR_RETURN(e.agent_started, ar.int64("started"));
  CTRUST_TRY(ar.finish());

  ObjectReader hr(*host, "evidence.host");
  CTRUST_TRY(hr.check_object());
  CTRUST_ASSIGN_OR_RETURN(const json* hq, hr.member("quote", true));
  CTRUST_ASSIGN_OR_RETURN(const json* hl, hr.member("log", true));
  CTRUST_TRY(hr.finish());
  CTRUST_ASSIGN_OR_RETURN(e.host_quote, read_quote(*hq, "evidence.host.quote"));
  CTRUST_ASSIGN_OR_RETURN(e.host_log, read_log(*hl, "evidence.host.log"));

  std::set<std::string> seen;
  for (std::size_t i = 0; i < containers->size(); ++i) {
    std::string path = "evidence.containers[" + std::to_string(i) + "]";
    ObjectReader cr((*containers)[i], path);
    CTRUST_TRY(cr.check_object());
    ContainerEvidence c;
    CTRUST_ASSIGN_OR_RETURN(c.id, read_id(cr, "id"));
    CTRUST_ASSIGN_OR_RETURN(c.state, cr.string("state", 16));
    if (c.state != "running" && c.state != "stopped") {
      return ObjectReader::fail(path + ".state", R"(must be "running" or "stopped")");
    }
    CTRUST_ASSIGN_OR_RETURN(c.ak_public, cr.b64("ak_public", kMaxQuoteBytes, false));
    CTRUST_ASSIGN_OR_RETURN(const json* quote, cr.member("quote", false));
    CTRUST_ASSIGN_OR_RETURN(const json* log, cr.member("log", true));
    CTRUST_TRY(cr.finish());
    if (quote != nullptr) {
      CTRUST_ASSIGN_OR_RETURN(QuoteEvidence q, read_quote(*quote, path + ".quote"));
      c.quote = std::move(q);
    }
    CTRUST_ASSIGN_OR_RETURN(c.log, read_log(*log, path + ".log"));
    if (c.state == "running" && (!c.quote || c.ak_public.empty())) {
      return ObjectReader::fail(path, "is running but has no quote and AK");
    }
    if (!seen.insert(c.id).second) {
      return ObjectReader::fail(path, "names container " + c.id + " twice");
    }
    e.containers.push_back(std::move(c));
  }
  for (std::size_t i = 0; i < unknown->size(); ++i) {
    const json& v = (*unknown)[i];
    std::string where = "evidence.unknown[" + std::to_string(i) + "]";
    if (!v.is_string() || !valid_id(v.get<std::string>())) {
      return ObjectReader::fail(where, "is not a valid container id");
    }
    e.unknown.push_back(v.get<std::string>());
  }
  return e;
}

json to_json(const Identity& id) {
  json out = {{"version", kProtocolVersion},
              {"agent_id", id.agent_id},
              {"ek_public", base64_encode(id.ek_public)},
              {"ak_public", base64_encode(id.ak_public)},
              {"tls_fingerprint", id.tls_fingerprint},
              {"vtpm_ca_certificates", id.vtpm_ca_certificates}};
  if (id.ek_certificate) out["ek_certificate"] = base64_encode(*id.ek_certificate);
  if (id.tls_quote) out["tls_quote"] = quote_json(*id.tls_quote);
  return out;
}

Result<Identity> parse_identity(std::string_view text) {
  CTRUST_ASSIGN_OR_RETURN(json doc, parse_document(text, kMaxChallengeBytes, "identity"));
  ObjectReader r(doc, "identity");
  CTRUST_TRY(r.check_object());
  CTRUST_TRY(check_version(r));
  Identity id;
  CTRUST_ASSIGN_OR_RETURN(id.agent_id, read_id(r, "agent_id"));
  CTRUST_ASSIGN_OR_RETURN(id.ek_public, r.b64("ek_public", kMaxQuoteBytes));
  CTRUST_ASSIGN_OR_RETURN(id.ak_public, r.b64("ak_public", kMaxQuoteBytes));
  if (r.has("ek_certificate")) {
    CTRUST_ASSIGN_OR_RETURN(Bytes cert, r.b64("ek_certificate", 16384));
    id.ek_certificate = std::move(cert);
  }
  CTRUST_ASSIGN_OR_RETURN(std::string fp, r.string("tls_fingerprint", 64));
  CTRUST_ASSIGN_OR_RETURN(Bytes fp_bytes,
                          ObjectReader::hex_value("identity.tls_fingerprint", fp, 32));
  (void)fp_bytes;
  id.tls_fingerprint = fp;
  CTRUST_ASSIGN_OR_RETURN(const json* quote, r.member("tls_quote", false));
  CTRUST_ASSIGN_OR_RETURN(const json* cas, r.array("vtpm_ca_certificates", 16, false));
  CTRUST_TRY(r.finish());
  if (quote != nullptr) {
    CTRUST_ASSIGN_OR_RETURN(QuoteEvidence q, read_quote(*quote, "identity.tls_quote"));
    id.tls_quote = std::move(q);
  }
  if (cas != nullptr) {
    for (const auto& v : *cas) {
      if (!v.is_string() || v.get_ref<const std::string&>().size() > 16384) {
        return ObjectReader::fail("identity.vtpm_ca_certificates", "must hold PEM strings");
      }
      id.vtpm_ca_certificates.push_back(v.get<std::string>());
    }
  }
  return id;
}

json to_json(const ActivateRequest& request) {
  return {{"version", kProtocolVersion},
          {"credential_blob", base64_encode(request.credential_blob)},
          {"secret", base64_encode(request.secret)}};
}

Result<ActivateRequest> parse_activate_request(std::string_view text) {
  CTRUST_ASSIGN_OR_RETURN(json doc, parse_document(text, kMaxChallengeBytes, "activation"));
  ObjectReader r(doc, "activation");
  CTRUST_TRY(r.check_object());
  CTRUST_TRY(check_version(r));
  ActivateRequest a;
  CTRUST_ASSIGN_OR_RETURN(a.credential_blob, r.b64("credential_blob", kMaxQuoteBytes));
  CTRUST_ASSIGN_OR_RETURN(a.secret, r.b64("secret", kMaxQuoteBytes));
  CTRUST_TRY(r.finish());
  return a;
}

json to_json(const ActivateResponse& response) {
  return {{"version", kProtocolVersion}, {"proof", to_hex(response.proof)}};
}

Result<ActivateResponse> parse_activate_response(std::string_view text) {
  CTRUST_ASSIGN_OR_RETURN(json doc, parse_document(text, kMaxChallengeBytes, "activation answer"));
  ObjectReader r(doc, "activation");
  CTRUST_TRY(r.check_object());
  CTRUST_TRY(check_version(r));
  ActivateResponse a;
  CTRUST_ASSIGN_OR_RETURN(a.proof, r.hex("proof", 32));
  CTRUST_TRY(r.finish());
  return a;
}

Bytes container_qualifying_data(ByteView nonce, std::string_view container_id,
                                std::uint64_t log_entries) {
  Bytes m;
  put_text(m, "ctrust-container-quote-v1");
  m.push_back(0);
  m.insert(m.end(), nonce.begin(), nonce.end());
  put_u32(m, static_cast<std::uint32_t>(container_id.size()));
  put_text(m, container_id);
  put_u64(m, log_entries);
  return sha256(m);
}

Bytes host_qualifying_data(ByteView nonce, std::uint64_t host_log_entries,
                           const std::vector<ContainerEvidence>& containers) {
  Bytes m;
  put_text(m, "ctrust-host-quote-v1");
  m.push_back(0);
  m.insert(m.end(), nonce.begin(), nonce.end());
  put_u64(m, host_log_entries);
  std::uint32_t n = 0;
  for (const auto& c : containers) n += c.quote ? 1 : 0;
  put_u32(m, n);
  for (const auto& c : containers) {
    if (!c.quote) continue;
    put_u32(m, static_cast<std::uint32_t>(c.id.size()));
    put_text(m, c.id);
    Bytes h = sha256(c.quote->message);
    m.insert(m.end(), h.begin(), h.end());
  }
  return sha256(m);
}

Bytes tls_binding_data(ByteView nonce, std::string_view tls_fingerprint) {
  Bytes m;
  put_text(m, "ctrust-tls-key-v1");
  m.push_back(0);
  m.insert(m.end(), nonce.begin(), nonce.end());
  put_text(m, tls_fingerprint);
  return sha256(m);
}

Bytes activation_proof(ByteView secret, std::string_view tls_fingerprint) {
  Bytes m;
  put_text(m, "ctrust-activate-v1");
  m.push_back(0);
  put_text(m, tls_fingerprint);
  Bytes out(32);
  unsigned int len = 32;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), m.data(), m.size(), out.data(),
       &len);
  return out;
}

}  // namespace ctrust::attest
