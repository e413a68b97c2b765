#include "policy/policy.h"

#include <openssl/evp.h>
#include <regex.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <set>

#include "util/file.h"
#include "util/json.h"
#include "util/text.h"

namespace ctrust::policy {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr std::string_view kSignedPrefix = "ctrust-policy-v1\n";

Error format_error(const std::string& where, const std::string& what) {
  return Error(Errc::kFormat, where.empty() ? what : where + ": " + what);
}

// ---- field readers: each names the JSON path of what is wrong ----

Result<std::string> get_string(const json& v, const std::string& where, std::size_t max_len) {
  if (!v.is_string()) return format_error(where, "must be a string");
  const auto& s = v.get_ref<const std::string&>();
  if (s.size() > max_len) {
    return format_error(where, "longer than " + std::to_string(max_len) + " bytes");
  }
  if (s.find('\0') != std::string::npos) return format_error(where, "contains a NUL character");
  return s;
}

Result<std::uint64_t> get_unsigned(const json& v, const std::string& where) {
  // Integers beyond 64 bits and fractions parse as floats; negative ones as signed.
  if (!v.is_number_unsigned()) return format_error(where, "must be an integer from 0 to 2^64-1");
  return v.get<std::uint64_t>();
}

Result<const json*> member(const json& obj, const char* key, const std::string& where,
                           bool required) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) return format_error(where, std::string("missing member \"") + key + "\"");
    return static_cast<const json*>(nullptr);
  }
  return &*it;
}

Result<void> only_members(const json& obj, std::initializer_list<std::string_view> known,
                          const std::string& where) {
  for (const auto& [k, v] : obj.items()) {
    if (std::find(known.begin(), known.end(), k) == known.end()) {
      return format_error(where, "unknown member \"" + printable(k, 64) + "\"");
    }
  }
  return ok_result();
}

// "alg:hex" with a known algorithm and lower-case hex of the right length.
Result<crypto::Digest> parse_digest_text(std::string_view text, const std::string& where) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return format_error(where, "a digest must be written \"alg:hex\"");
  }
  auto alg = crypto::parse_hash_alg(text.substr(0, colon));
  if (!alg || crypto::hash_name(*alg) != text.substr(0, colon)) {
    return format_error(where, "unknown digest algorithm \"" +
                                   printable(text.substr(0, colon), 16) +
                                   "\" (sha1, sha256, sha384, sha512)");
  }
  std::string_view hex = text.substr(colon + 1);
  if (hex.size() != 2 * crypto::digest_size(*alg)) {
    return format_error(where, "a " + std::string(crypto::hash_name(*alg)) + " digest has " +
                                   std::to_string(2 * crypto::digest_size(*alg)) +
                                   " hex digits, not " + std::to_string(hex.size()));
  }
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return format_error(where, "digests are written in lower-case hex");
    }
  }
  auto d = crypto::Digest::from_hex(*alg, hex);
  if (!d) return format_error(where, d.error().message());
  return *d;
}

std::string digest_text(const crypto::Digest& d) {
  return std::string(crypto::hash_name(d.alg)) + ":" + d.hex();
}

std::string base64_encode(ByteView data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data.data(),
                          static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// Standard alphabet, padded, no whitespace; anything else (or a non-canonical encoding)
// is rejected so that one value has one spelling.
Result<Bytes> base64_decode(std::string_view text, const std::string& where) {
  if (text.empty() || text.size() % 4 != 0 || text.size() > (1u << 20)) {
    return format_error(where, "not canonical base64");
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || (c == '=' && i >= text.size() - 2);
    if (!ok) return format_error(where, "not canonical base64");
  }
  std::size_t pad = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
  if (pad == 1 && text[text.size() - 2] == '=') return format_error(where, "not canonical base64");
  Bytes out(text.size() / 4 * 3);
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0 || static_cast<std::size_t>(n) < pad)
    return format_error(where, "not canonical base64");
  out.resize(static_cast<std::size_t>(n) - pad);
  if (base64_encode(out) != text) return format_error(where, "not canonical base64");
  return out;
}

bool printable_text(std::string_view s) {
  return is_valid_utf8(s) && std::none_of(s.begin(), s.end(), [](char c) {
           return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
         });
}

Result<void> check_exclude(const std::string& re, const std::string& where) {
  if (re.empty() || re.size() > kMaxTextLen || !printable_text(re)) {
    return format_error(where, "an exclude must be 1 to " + std::to_string(kMaxTextLen) +
                                   " bytes of UTF-8 without control characters");
  }
  // Back-references make POSIX matching exponential; nothing in a path rule needs them.
  for (std::size_t i = 0; i + 1 < re.size(); ++i) {
    if (re[i] == '\\') {
      if (re[i + 1] >= '1' && re[i + 1] <= '9') {
        return format_error(where, "back-references are not allowed in excludes");
      }
      ++i;
    }
  }
  regex_t compiled;
  int rc = ::regcomp(&compiled, re.c_str(), REG_EXTENDED | REG_NOSUB);
  if (rc != 0) {
    char msg[256];
    ::regerror(rc, &compiled, msg, sizeof(msg));
    return format_error(where, "not a POSIX extended regular expression: " + std::string(msg));
  }
  ::regfree(&compiled);
  return ok_result();
}

Result<void> check_path_pattern(const std::string& p, const std::string& where) {
  if (p.empty() || p[0] != '/') return format_error(where, "a path pattern must start with '/'");
  if (p.size() > kMaxPathPatternLen) {
    return format_error(
        where, "a path pattern is at most " + std::to_string(kMaxPathPatternLen) + " bytes");
  }
  if (p.find('\0') != std::string::npos) return format_error(where, "contains a NUL character");
  if (!is_valid_utf8(p)) {
    return format_error(
        where, "\"" + printable(p, 200) + "\" is not UTF-8, which a JSON policy cannot hold");
  }
  return ok_result();
}

bool digest_less(const crypto::Digest& a, const crypto::Digest& b) {
  if (a.alg != b.alg) return a.alg < b.alg;
  return std::lexicographical_compare(a.bytes.begin(), a.bytes.begin() + a.size(), b.bytes.begin(),
                                      b.bytes.begin() + b.size());
}

// The members of a policy other than its signature, in documentation order: the same code
// fills the canonical form (json: members sorted) and the readable one (ordered_json).
template <typename Json>
Json policy_body(const Policy& p) {
  Json doc = Json::object();
  doc["ctrust_policy"] = kFormatVersion;
  doc["name"] = p.name;
  doc["issuer"] = p.issuer;
  doc["serial"] = p.serial;
  doc["not_before"] = format_time(p.not_before);
  doc["not_after"] = format_time(p.not_after);
  doc["mode"] = std::string(mode_name(p.mode));
  Json images = Json::array();
  for (const auto& d : p.images) images.push_back(digest_text(d));
  doc["images"] = std::move(images);
  Json excludes = Json::array();
  for (const auto& e : p.excludes) excludes.push_back(e);
  doc["exclude"] = std::move(excludes);
  for (const auto& [k, v] : p.extensions.items()) doc[k] = Json::parse(v.dump());
  Json allow = Json::array();
  for (const Allow& a : p.allow) {
    Json item = Json::object();
    item["digest"] = digest_text(a.digest);
    if (!a.paths.empty()) item["paths"] = a.paths;
    allow.push_back(std::move(item));
  }
  doc["allow"] = std::move(allow);
  return doc;
}

Result<Signature> parse_signature(const json& v) {
  const std::string where = "signature";
  if (!v.is_object()) return format_error(where, "must be an object");
  CTRUST_TRY(only_members(v, {"alg", "key_id", "value", "certificates"}, where));
  Signature s;
  CTRUST_ASSIGN_OR_RETURN(const json* alg, member(v, "alg", where, true));
  CTRUST_ASSIGN_OR_RETURN(s.alg, get_string(*alg, where + ".alg", 64));
  CTRUST_ASSIGN_OR_RETURN(const json* kid, member(v, "key_id", where, true));
  CTRUST_ASSIGN_OR_RETURN(std::string kid_text, get_string(*kid, where + ".key_id", 200));
  CTRUST_ASSIGN_OR_RETURN(s.key_id, parse_digest_text(kid_text, where + ".key_id"));
  if (s.key_id.alg != crypto::HashAlg::kSha256) {
    return format_error(where + ".key_id", "must be a sha256 fingerprint");
  }
  CTRUST_ASSIGN_OR_RETURN(const json* val, member(v, "value", where, true));
  CTRUST_ASSIGN_OR_RETURN(std::string val_text, get_string(*val, where + ".value", 1u << 20));
  CTRUST_ASSIGN_OR_RETURN(s.value, base64_decode(val_text, where + ".value"));
  CTRUST_ASSIGN_OR_RETURN(const json* certs, member(v, "certificates", where, false));
  if (certs != nullptr) {
    if (!certs->is_array() || certs->empty() || certs->size() > 8) {
      return format_error(where + ".certificates", "must be an array of 1 to 8 PEM strings");
    }
    for (std::size_t i = 0; i < certs->size(); ++i) {
      std::string w = where + ".certificates[" + std::to_string(i) + "]";
      CTRUST_ASSIGN_OR_RETURN(std::string pem, get_string((*certs)[i], w, 64u << 10));
      // One certificate per string, in OpenSSL's own PEM spelling, so that no byte of the
      // string can change without the certificate changing.
      auto cert = crypto::Certificate::from_pem(pem);
      if (!cert) return format_error(w, cert.error().message());
      CTRUST_ASSIGN_OR_RETURN(std::string again, cert->to_pem());
      if (again != pem) {
        return format_error(w,
                            "not a single certificate in canonical PEM (64-column base64, "
                            "\\n line ends, nothing around it)");
      }
      s.certificates.push_back(std::move(pem));
    }
  }
  return s;
}

Result<Policy> from_json(const json& doc) {
  if (!doc.is_object()) return format_error("", "a policy is a JSON object");
  Policy p;
  CTRUST_ASSIGN_OR_RETURN(const json* version, member(doc, "ctrust_policy", "", true));
  CTRUST_ASSIGN_OR_RETURN(std::uint64_t v, get_unsigned(*version, "ctrust_policy"));
  if (v != kFormatVersion) {
    return Error(Errc::kUnsupported, "policy format version " + std::to_string(v) +
                                         " is not supported (this " + "ctrust reads version " +
                                         std::to_string(kFormatVersion) + ")");
  }
  static const std::set<std::string, std::less<>> kKnown = {
      "ctrust_policy", "name", "issuer", "serial",  "not_before", "not_after",
      "images",        "mode", "allow",  "exclude", "signature"};
  for (const auto& [k, val] : doc.items()) {
    if (kKnown.count(k) != 0) continue;
    if (k.rfind("x-", 0) == 0 && k.size() > 2 && k.size() <= 64) {
      p.extensions[k] = val;
      continue;
    }
    return format_error("", "unknown member \"" + printable(k, 64) +
                                "\" (format 1 has no such field; extension members must "
                                "be named \"x-...\")");
  }
  CTRUST_ASSIGN_OR_RETURN(const json* name, member(doc, "name", "", true));
  CTRUST_ASSIGN_OR_RETURN(p.name, get_string(*name, "name", kMaxTextLen));
  CTRUST_ASSIGN_OR_RETURN(const json* issuer, member(doc, "issuer", "", true));
  CTRUST_ASSIGN_OR_RETURN(p.issuer, get_string(*issuer, "issuer", kMaxTextLen));
  CTRUST_ASSIGN_OR_RETURN(const json* serial, member(doc, "serial", "", true));
  CTRUST_ASSIGN_OR_RETURN(p.serial, get_unsigned(*serial, "serial"));
  for (auto [key, field] : {std::pair{"not_before", &p.not_before}, {"not_after", &p.not_after}}) {
    CTRUST_ASSIGN_OR_RETURN(const json* t, member(doc, key, "", true));
    CTRUST_ASSIGN_OR_RETURN(std::string text, get_string(*t, key, 64));
    auto parsed = parse_time(text);
    if (!parsed) return format_error(key, parsed.error().message());
    *field = *parsed;
  }
  CTRUST_ASSIGN_OR_RETURN(const json* mode, member(doc, "mode", "", true));
  CTRUST_ASSIGN_OR_RETURN(std::string mode_text, get_string(*mode, "mode", 16));
  auto m = parse_mode(mode_text);
  if (!m) {
    return format_error(
        "mode", "unknown mode \"" + printable(mode_text, 16) + "\" (off, measure, audit, enforce)");
  }
  p.mode = *m;

  CTRUST_ASSIGN_OR_RETURN(const json* images, member(doc, "images", "", true));
  if (!images->is_array()) return format_error("images", "must be an array");
  for (std::size_t i = 0; i < images->size(); ++i) {
    std::string w = "images[" + std::to_string(i) + "]";
    CTRUST_ASSIGN_OR_RETURN(std::string text, get_string((*images)[i], w, 200));
    CTRUST_ASSIGN_OR_RETURN(crypto::Digest d, parse_digest_text(text, w));
    p.images.push_back(d);
  }

  CTRUST_ASSIGN_OR_RETURN(const json* allow, member(doc, "allow", "", true));
  if (!allow->is_array()) return format_error("allow", "must be an array");
  p.allow.reserve(allow->size());
  for (std::size_t i = 0; i < allow->size(); ++i) {
    std::string w = "allow[" + std::to_string(i) + "]";
    const json& item = (*allow)[i];
    if (!item.is_object()) return format_error(w, "must be an object");
    CTRUST_TRY(only_members(item, {"digest", "paths"}, w));
    Allow a;
    CTRUST_ASSIGN_OR_RETURN(const json* d, member(item, "digest", w, true));
    CTRUST_ASSIGN_OR_RETURN(std::string text, get_string(*d, w + ".digest", 200));
    CTRUST_ASSIGN_OR_RETURN(a.digest, parse_digest_text(text, w + ".digest"));
    CTRUST_ASSIGN_OR_RETURN(const json* paths, member(item, "paths", w, false));
    if (paths != nullptr) {
      if (!paths->is_array() || paths->empty()) {
        return format_error(w + ".paths",
                            "must be a non-empty array (leave \"paths\" out to allow any path)");
      }
      for (std::size_t j = 0; j < paths->size(); ++j) {
        std::string wp = w + ".paths[" + std::to_string(j) + "]";
        CTRUST_ASSIGN_OR_RETURN(std::string path, get_string((*paths)[j], wp, kMaxPathPatternLen));
        a.paths.push_back(std::move(path));
      }
    }
    p.allow.push_back(std::move(a));
  }

  CTRUST_ASSIGN_OR_RETURN(const json* excl, member(doc, "exclude", "", true));
  if (!excl->is_array()) return format_error("exclude", "must be an array");
  for (std::size_t i = 0; i < excl->size(); ++i) {
    std::string w = "exclude[" + std::to_string(i) + "]";
    CTRUST_ASSIGN_OR_RETURN(std::string re, get_string((*excl)[i], w, kMaxTextLen));
    p.excludes.push_back(std::move(re));
  }

  CTRUST_ASSIGN_OR_RETURN(const json* sig, member(doc, "signature", "", false));
  if (sig != nullptr) {
    CTRUST_ASSIGN_OR_RETURN(Signature s, parse_signature(*sig));
    p.signature = std::move(s);
  }
  return p;
}

// Canonical documents are already normalized; a signed document that is not would mean
// the signer's tool and ours disagree on the canonical form, so refuse it.
bool is_normalized(const Policy& p) {
  for (std::size_t i = 1; i < p.allow.size(); ++i) {
    if (!digest_less(p.allow[i - 1].digest, p.allow[i].digest)) return false;
  }
  for (const Allow& a : p.allow) {
    if (!std::is_sorted(a.paths.begin(), a.paths.end()) ||
        std::adjacent_find(a.paths.begin(), a.paths.end()) != a.paths.end()) {
      return false;
    }
  }
  return true;
}

}  // namespace

Result<std::int64_t> parse_time(std::string_view text) {
  // Exactly YYYY-MM-DDTHH:MM:SSZ.
  static constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:ddZ";
  bool shape_ok = text.size() == kShape.size();
  for (std::size_t i = 0; shape_ok && i < text.size(); ++i) {
    shape_ok = kShape[i] == 'd' ? (text[i] >= '0' && text[i] <= '9') : text[i] == kShape[i];
  }
  if (!shape_ok) {
    return Error(Errc::kFormat, "a time is written YYYY-MM-DDTHH:MM:SSZ (UTC), not \"" +
                                    printable(text, 40) + "\"");
  }
  auto num = [&](std::size_t pos, std::size_t len) {
    int v = 0;
    for (std::size_t i = pos; i < pos + len; ++i) v = v * 10 + (text[i] - '0');
    return v;
  };
  struct tm tm {};
  tm.tm_year = num(0, 4) - 1900;
  tm.tm_mon = num(5, 2) - 1;
  tm.tm_mday = num(8, 2);
  tm.tm_hour = num(11, 2);
  tm.tm_min = num(14, 2);
  tm.tm_sec = num(17, 2);
  time_t t = ::timegm(&tm);
  // timegm normalizes out-of-range fields (Feb 30 -> Mar 2); a round trip catches them.
  if (format_time(t) != text) {
    return Error(Errc::kFormat, "\"" + std::string(text) + "\" is not a valid date and time");
  }
  return static_cast<std::int64_t>(t);
}

std::string format_time(std::int64_t seconds) {
  auto t = static_cast<time_t>(seconds);
  struct tm tm {};
  if (::gmtime_r(&t, &tm) == nullptr) return "invalid-time";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

Result<void> normalize(Policy& p) {
  if (p.name.empty() || p.name.size() > kMaxTextLen || !printable_text(p.name)) {
    return format_error("name", "must be 1 to " + std::to_string(kMaxTextLen) +
                                    " bytes without control characters");
  }
  if (p.issuer.empty() || p.issuer.size() > kMaxTextLen || !printable_text(p.issuer)) {
    return format_error("issuer", "must be 1 to " + std::to_string(kMaxTextLen) +
                                      " bytes without control characters");
  }
  if (p.not_before >= p.not_after) {
    return format_error("not_after", "must be later than not_before");
  }
  for (std::size_t i = 0; i < p.images.size(); ++i) {
    if (p.images[i].alg != crypto::HashAlg::kSha256) {
      return format_error("images[" + std::to_string(i) + "]",
                          "image digests are sha256 (ctrust image digest)");
    }
  }
  std::sort(p.images.begin(), p.images.end(), digest_less);
  p.images.erase(std::unique(p.images.begin(), p.images.end()), p.images.end());
  for (std::size_t i = 0; i < p.allow.size(); ++i) {
    Allow& a = p.allow[i];
    for (std::size_t j = 0; j < a.paths.size(); ++j) {
      CTRUST_TRY(check_path_pattern(
          a.paths[j], "allow[" + std::to_string(i) + "].paths[" + std::to_string(j) + "]"));
    }
    std::sort(a.paths.begin(), a.paths.end());
    a.paths.erase(std::unique(a.paths.begin(), a.paths.end()), a.paths.end());
  }
  std::stable_sort(p.allow.begin(), p.allow.end(),
                   [](const Allow& a, const Allow& b) { return digest_less(a.digest, b.digest); });
  // Merge equal digests: the union of their paths, and "any path" if either allows any.
  std::vector<Allow> merged;
  merged.reserve(p.allow.size());
  for (Allow& a : p.allow) {
    if (!merged.empty() && merged.back().digest == a.digest) {
      Allow& m = merged.back();
      if (m.paths.empty() || a.paths.empty()) {
        m.paths.clear();
      } else {
        std::vector<std::string> both;
        std::set_union(m.paths.begin(), m.paths.end(), a.paths.begin(), a.paths.end(),
                       std::back_inserter(both));
        m.paths = std::move(both);
      }
      continue;
    }
    merged.push_back(std::move(a));
  }
  p.allow = std::move(merged);
  for (std::size_t i = 0; i < p.excludes.size(); ++i) {
    CTRUST_TRY(check_exclude(p.excludes[i], "exclude[" + std::to_string(i) + "]"));
  }
  std::sort(p.excludes.begin(), p.excludes.end());
  p.excludes.erase(std::unique(p.excludes.begin(), p.excludes.end()), p.excludes.end());
  return ok_result();
}

Result<Policy> parse_policy(std::string_view text) {
  if (text.size() > kMaxPolicyBytes) {
    return Error(Errc::kLimit,
                 "a policy is at most " + std::to_string(kMaxPolicyBytes >> 20) + " MiB");
  }
  CTRUST_ASSIGN_OR_RETURN(json doc, parse_json_strict(text, kMaxJsonDepth));
  CTRUST_ASSIGN_OR_RETURN(Policy p, from_json(doc));
  bool was_normalized = is_normalized(p);
  CTRUST_TRY(normalize(p));
  if (p.signature && !was_normalized) {
    return Error(Errc::kFormat,
                 "a signed policy must list allow entries sorted by digest with unique digests "
                 "and sorted unique paths (re-create it with ctrust policy)");
  }
  // JSON lets whitespace and some spellings change without changing a value; a signed
  // policy file must be exactly as ctrust writes it, so that no byte of it can change
  // without failing.
  if (p.signature && to_json(p) != text) {
    return Error(Errc::kFormat,
                 "a signed policy must be byte for byte in the form ctrust writes (this one was "
                 "reformatted or edited after signing)");
  }
  return p;
}

Result<Policy> load_policy(const std::string& path) {
  CTRUST_ASSIGN_OR_RETURN(Bytes data, read_file(path, kMaxPolicyBytes));
  auto p = parse_policy(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
  if (!p) return std::move(p).error().with_context("policy " + path);
  return p;
}

std::string to_json(const Policy& p) {
  auto doc = policy_body<ordered_json>(p);
  if (p.signature) {
    const Signature& s = *p.signature;
    ordered_json sig = ordered_json::object();
    sig["alg"] = s.alg;
    sig["key_id"] = digest_text(s.key_id);
    sig["value"] = base64_encode(s.value);
    if (!s.certificates.empty()) sig["certificates"] = s.certificates;
    doc["signature"] = std::move(sig);
  }
  return doc.dump(2) + "\n";
}

std::string signed_bytes(const Policy& p) {
  std::string out(kSignedPrefix);
  out += policy_body<json>(p).dump();
  return out;
}

std::string signature_alg_name(crypto::KeyType type) {
  crypto::SignOptions o = crypto::default_sign_options(type);
  std::string hash(crypto::hash_name(o.hash));
  switch (type) {
    case crypto::KeyType::kEd25519:
      return "ed25519";
    case crypto::KeyType::kEcdsaP256:
    case crypto::KeyType::kEcdsaP384:
      return std::string(crypto::key_type_name(type)) + "-" + hash;
    case crypto::KeyType::kRsa2048:
    case crypto::KeyType::kRsa3072:
    case crypto::KeyType::kRsa4096:
      return std::string(crypto::key_type_name(type)) +
             (o.rsa_padding == crypto::RsaPadding::kPss ? "-pss-" : "-pkcs1-") + hash;
  }
  return "unknown";
}

Result<void> sign_policy(Policy& policy, const crypto::PrivateKey& key,
                         const std::vector<crypto::Certificate>& chain) {
  CTRUST_TRY(normalize(policy));
  CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey pub, key.public_key());
  CTRUST_ASSIGN_OR_RETURN(crypto::Digest fp, pub.fingerprint());
  Signature s;
  s.alg = signature_alg_name(key.type());
  s.key_id = fp;
  if (!chain.empty()) {
    CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey cert_key, chain.front().public_key());
    CTRUST_ASSIGN_OR_RETURN(crypto::Digest cert_fp, cert_key.fingerprint());
    if (!(cert_fp == fp)) {
      return Error(Errc::kInvalidArgument,
                   "the certificate " + chain.front().subject() + " is not for the signing key");
    }
    for (const auto& c : chain) {
      CTRUST_ASSIGN_OR_RETURN(std::string pem, c.to_pem());
      s.certificates.push_back(std::move(pem));
    }
  }
  std::string message = signed_bytes(policy);
  CTRUST_ASSIGN_OR_RETURN(s.value,
                          key.sign(as_bytes(message), crypto::default_sign_options(key.type())));
  policy.signature = std::move(s);
  return ok_result();
}

Result<TrustAnchors> parse_trust_anchors(std::string_view pem) {
  TrustAnchors t;
  // A bundle may mix keys and certificates: split it into PEM blocks and read each.
  std::size_t pos = 0;
  while ((pos = pem.find("-----BEGIN ", pos)) != std::string_view::npos) {
    std::size_t end = pem.find("-----END ", pos);
    if (end == std::string_view::npos) return Error(Errc::kFormat, "unterminated PEM block");
    std::size_t line_end = pem.find('\n', end);
    std::string_view block =
        pem.substr(pos, (line_end == std::string_view::npos ? pem.size() : line_end + 1) - pos);
    if (block.find("-----BEGIN CERTIFICATE-----") == 0) {
      auto c = crypto::Certificate::from_pem(block);
      if (!c) return std::move(c).error().with_context("trust anchor");
      t.certificates.push_back(std::move(*c));
    } else if (block.find("-----BEGIN PUBLIC KEY-----") == 0) {
      auto k = crypto::PublicKey::from_pem(block);
      if (!k) return std::move(k).error().with_context("trust anchor");
      t.keys.push_back(std::move(*k));
    } else {
      return Error(Errc::kFormat,
                   "a trust anchor file holds PEM \"PUBLIC KEY\" or \"CERTIFICATE\" blocks; "
                   "found \"" +
                       printable(block.substr(0, block.find('\n')), 60) + "\"");
    }
    pos += block.size();
  }
  if (t.keys.empty() && t.certificates.empty()) {
    return Error(Errc::kFormat, "no public key or certificate found in the trust anchor file");
  }
  return t;
}

Result<TrustAnchors> load_trust_anchors(const std::string& path) {
  CTRUST_ASSIGN_OR_RETURN(Bytes data, read_file(path, 4u << 20));
  auto t = parse_trust_anchors(
      std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
  if (!t) return std::move(t).error().with_context(path);
  return t;
}

std::string validity_problem(const Policy& p, std::int64_t now) {
  if (now < p.not_before) {
    return "the policy is not valid before " + format_time(p.not_before) + " (now " +
           format_time(now) + ")";
  }
  if (now >= p.not_after) {
    return "the policy expired at " + format_time(p.not_after) + " (now " + format_time(now) + ")";
  }
  return {};
}

Result<VerifyResult> verify_policy(const Policy& policy, const TrustAnchors& anchors,
                                   std::int64_t now) {
  VerifyResult r;
  if (!policy.signature) {
    r.reason = "the policy is not signed";
    return r;
  }
  const Signature& s = *policy.signature;
  std::optional<crypto::PublicKey> signer;
  if (!s.certificates.empty()) {
    std::vector<crypto::Certificate> chain;
    for (const auto& pem : s.certificates) {
      CTRUST_ASSIGN_OR_RETURN(crypto::Certificate c, crypto::Certificate::from_pem(pem));
      chain.push_back(std::move(c));
    }
    // Whatever the anchors, an embedded signer certificate must be the signing key's: a
    // reader of the policy must not be shown a certificate that did not sign it.
    CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey leaf_key, chain.front().public_key());
    CTRUST_ASSIGN_OR_RETURN(crypto::Digest leaf_fp, leaf_key.fingerprint());
    if (!(leaf_fp == s.key_id)) {
      r.reason = "the embedded signer certificate " + chain.front().subject() +
                 " is not for the signing key " + digest_text(s.key_id);
      return r;
    }
    if (!anchors.certificates.empty()) {
      std::vector<crypto::Certificate> intermediates(chain.begin() + 1, chain.end());
      CTRUST_ASSIGN_OR_RETURN(std::string problem,
                              crypto::verify_certificate_chain(chain.front(), intermediates,
                                                               anchors.certificates, now));
      if (!problem.empty()) {
        r.reason =
            "the signer certificate " + chain.front().subject() + " is not trusted: " + problem;
        return r;
      }
      CTRUST_ASSIGN_OR_RETURN(crypto::PublicKey k, chain.front().public_key());
      signer = std::move(k);
      r.signer = chain.front().subject();
    }
  }
  if (!signer) {
    for (const crypto::PublicKey& k : anchors.keys) {
      CTRUST_ASSIGN_OR_RETURN(crypto::Digest fp, k.fingerprint());
      if (fp == s.key_id) {
        signer = k;
        r.signer = digest_text(fp);
        break;
      }
    }
  }
  if (!signer) {
    r.reason = "the policy is signed by key " + digest_text(s.key_id) +
               ", which is not among the trust anchors";
    return r;
  }
  CTRUST_ASSIGN_OR_RETURN(crypto::Digest fp, signer->fingerprint());
  if (!(fp == s.key_id)) {
    r.reason = "signature.key_id does not name the signer's key (" + digest_text(fp) + ")";
    return r;
  }
  if (s.alg != signature_alg_name(signer->type())) {
    r.reason = "signature.alg \"" + printable(s.alg, 64) + "\" does not match the signer's key (" +
               signature_alg_name(signer->type()) + ")";
    return r;
  }
  std::string message = signed_bytes(policy);
  CTRUST_ASSIGN_OR_RETURN(bool good, signer->verify(as_bytes(message), s.value,
                                                    crypto::default_sign_options(signer->type())));
  if (!good) {
    r.reason = "the signature does not verify: the policy was changed after it was signed";
    return r;
  }
  r.reason = validity_problem(policy, now);
  r.ok = r.reason.empty();
  return r;
}

Result<void> merge_into(Policy& base, const std::vector<Policy>& others) {
  // A union: if any of the policies applies to any image, so does the merge.
  bool any_image = base.images.empty();
  for (const Policy& o : others) any_image = any_image || o.images.empty();
  for (const Policy& o : others) {
    base.allow.insert(base.allow.end(), o.allow.begin(), o.allow.end());
    base.images.insert(base.images.end(), o.images.begin(), o.images.end());
    base.excludes.insert(base.excludes.end(), o.excludes.begin(), o.excludes.end());
  }
  if (any_image) base.images.clear();
  base.signature.reset();
  return normalize(base);
}

}  // namespace ctrust::policy
