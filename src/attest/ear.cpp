#include "attest/ear.h"

#include <array>
#include <limits>
#include <set>
#include <utility>

#include "attest/jwt.h"
#include "util/text.h"

namespace ctrust::attest {
namespace {

using json = nlohmann::json;

constexpr std::string_view kProfileClaim = "eat_profile";
constexpr std::string_view kIatClaim = "iat";
constexpr std::string_view kVerifierIdClaim = "ear.verifier-id";
constexpr std::string_view kRawEvidenceClaim = "ear.raw-evidence";
constexpr std::string_view kNonceClaim = "eat_nonce";
constexpr std::string_view kSubmodsClaim = "submods";
constexpr std::string_view kStatusClaim = "ear.status";
constexpr std::string_view kVectorClaim = "ear.trustworthiness-vector";
constexpr std::string_view kPolicyIdClaim = "ear.appraisal-policy-id";

constexpr std::array<std::string_view, 6> kTopLevelClaims = {
    kProfileClaim, kIatClaim, kVerifierIdClaim, kRawEvidenceClaim, kNonceClaim, kSubmodsClaim};
constexpr std::array<std::string_view, 4> kSubmodClaims = {kStatusClaim, kVectorClaim,
                                                           kPolicyIdClaim, kEarReasonsClaim};

struct StatusInfo {
  Status status;
  std::string_view name;
  int rank;
};
constexpr std::array<StatusInfo, 4> kStatuses = {{
    {Status::kNone, "none", 1},
    {Status::kAffirming, "affirming", 3},
    {Status::kWarning, "warning", 2},
    {Status::kContraindicated, "contraindicated", 0},
}};

// The vector's members in AR4SI order, with their JSON names.
using VectorField = std::optional<int> TrustVector::*;
struct VectorMember {
  std::string_view name;
  VectorField field;
};
constexpr std::array<VectorMember, 8> kVectorMembers = {{
    {"instance-identity", &TrustVector::instance_identity},
    {"configuration", &TrustVector::configuration},
    {"executables", &TrustVector::executables},
    {"file-system", &TrustVector::file_system},
    {"hardware", &TrustVector::hardware},
    {"runtime-opaque", &TrustVector::runtime_opaque},
    {"storage-opaque", &TrustVector::storage_opaque},
    {"sourced-data", &TrustVector::sourced_data},
}};

template <std::size_t N>
bool is_one_of(std::string_view name, const std::array<std::string_view, N>& names) {
  for (std::string_view n : names) {
    if (n == name) return true;
  }
  return false;
}

std::string in_quotes(std::string_view s) { return "\"" + printable(s, 64) + "\""; }

std::string submod_path(std::string_view name) { return "submods[" + in_quotes(name) + "]"; }

Error format_error(const std::string& path, const std::string& what) {
  return Error(Errc::kFormat, "EAR " + path + ": " + what);
}

// A JSON member as a string, or an Error naming it.
Result<std::string> get_string(const json& value, const std::string& path) {
  if (!value.is_string()) return format_error(path, "not a string");
  return value.get<std::string>();
}

// Every validation rule, reporting with `code` (kInvalidArgument for our own values,
// kFormat for parsed untrusted ones).
Result<void> check(const Ear& ear, Errc code) {
  auto fail = [code](const std::string& what) { return Error(code, "EAR: " + what); };
  if (ear.profile != kEarProfile) {
    return fail("eat_profile must be " + in_quotes(kEarProfile) + ", not " +
                in_quotes(ear.profile));
  }
  if (ear.iat < 0) return fail("iat is negative");
  if (ear.verifier_id.developer.empty() || ear.verifier_id.build.empty()) {
    return fail("ear.verifier-id needs a non-empty developer and build");
  }
  if (ear.nonce) {
    const std::size_t n = ear.nonce->size();
    if (n < kMinEarNonceLen || n > kMaxEarNonceLen) {
      return fail("eat_nonce must be " + std::to_string(kMinEarNonceLen) + " to " +
                  std::to_string(kMaxEarNonceLen) + " characters, not " + std::to_string(n));
    }
  }
  if (!ear.extra.is_object()) return fail("extra top-level claims must be a JSON object");
  for (const auto& [name, value] : ear.extra.items()) {
    if (is_one_of(name, kTopLevelClaims)) {
      return fail("extra top-level claim " + in_quotes(name) + " collides with a known claim");
    }
  }
  if (ear.submods.empty()) return fail("submods must have at least one entry");
  std::set<std::string_view> names;
  for (const Submod& s : ear.submods) {
    const std::string path = submod_path(s.name);
    if (s.name.empty()) return fail("a submod has an empty name");
    if (!names.insert(s.name).second) return fail(path + " appears twice");
    for (const VectorMember& m : kVectorMembers) {
      const std::optional<int>& v = s.vector.*m.field;
      if (v && (*v < ar4si::kMin || *v > ar4si::kMax)) {
        return fail(path + " trustworthiness claim " + in_quotes(m.name) + " = " +
                    std::to_string(*v) + " is outside -128..127");
      }
    }
    if (!s.vector.empty() && trust_rank(s.status) > trust_rank(s.vector.tier())) {
      return fail(path + " ear.status " + in_quotes(status_name(s.status)) +
                  " claims more trust than its trustworthiness vector (" +
                  std::string(status_name(s.vector.tier())) + ")");
    }
    for (const Reason& r : s.reasons) {
      if (r.code.empty()) return fail(path + " has a reason without a code");
    }
    if (!s.extra.is_object()) return fail(path + " extra members must be a JSON object");
    for (const auto& [name, value] : s.extra.items()) {
      if (is_one_of(name, kSubmodClaims)) {
        return fail(path + " extra member " + in_quotes(name) + " collides with a known claim");
      }
    }
  }
  return ok_result();
}

Result<Submod> submod_from_json(const std::string& name, const json& value) {
  const std::string path = submod_path(name);
  if (!value.is_object()) return format_error(path, "not a JSON object");
  Submod s;
  s.name = name;
  auto status = value.find(kStatusClaim);
  if (status == value.end()) return format_error(path, "has no ear.status");
  CTRUST_ASSIGN_OR_RETURN(std::string status_text, get_string(*status, path + ".ear.status"));
  auto parsed = parse_status(status_text);
  if (!parsed) {
    return format_error(
        path + ".ear.status",
        in_quotes(status_text) + " is not one of none, affirming, warning, contraindicated");
  }
  s.status = *parsed;
  for (const auto& [member, member_value] : value.items()) {
    if (member == kStatusClaim) continue;
    if (member == kVectorClaim) {
      auto vector = TrustVector::from_json(member_value);
      if (!vector) {
        return std::move(vector).error().with_context("EAR " + path +
                                                      ".ear.trustworthiness-vector");
      }
      s.vector = std::move(vector).value();
    } else if (member == kPolicyIdClaim) {
      CTRUST_ASSIGN_OR_RETURN(s.policy_id,
                              get_string(member_value, path + ".ear.appraisal-policy-id"));
      if (s.policy_id.empty()) return format_error(path, "ear.appraisal-policy-id is empty");
    } else if (member == kEarReasonsClaim) {
      std::string reasons_path = path;
      reasons_path += '.';
      reasons_path += kEarReasonsClaim;
      if (!member_value.is_array()) return format_error(reasons_path, "not an array");
      for (std::size_t i = 0; i < member_value.size(); ++i) {
        auto reason = Reason::from_json(member_value[i]);
        if (!reason) {
          std::string where = "EAR ";
          where += reasons_path;
          where += '[';
          where += std::to_string(i);
          where += ']';
          return std::move(reason).error().with_context(where);
        }
        s.reasons.push_back(std::move(reason).value());
      }
    } else {
      s.extra[member] = member_value;
    }
  }
  return s;
}

}  // namespace

std::string_view status_name(Status status) {
  for (const StatusInfo& s : kStatuses) {
    if (s.status == status) return s.name;
  }
  return "none";
}

std::optional<Status> parse_status(std::string_view name) {
  for (const StatusInfo& s : kStatuses) {
    if (s.name == name) return s.status;
  }
  return std::nullopt;
}

int trust_rank(Status status) {
  for (const StatusInfo& s : kStatuses) {
    if (s.status == status) return s.rank;
  }
  return 0;
}

Status worse_of(Status a, Status b) { return trust_rank(b) < trust_rank(a) ? b : a; }

Status claim_tier(int value) {
  if (value < ar4si::kMin || value > ar4si::kMax) return Status::kContraindicated;
  const int magnitude = value < 0 ? -value : value;
  if (magnitude <= 1) return Status::kNone;
  if (magnitude <= 31) return Status::kAffirming;
  if (magnitude <= 95) return Status::kWarning;
  return Status::kContraindicated;
}

bool TrustVector::empty() const {
  for (const VectorMember& m : kVectorMembers) {
    if ((this->*m.field).has_value()) return false;
  }
  return true;
}

Status TrustVector::tier() const {
  std::optional<Status> worst;
  for (const VectorMember& m : kVectorMembers) {
    const std::optional<int>& v = this->*m.field;
    if (!v || *v == ar4si::kNoClaim) continue;
    worst = worst ? worse_of(*worst, claim_tier(*v)) : claim_tier(*v);
  }
  return worst.value_or(Status::kNone);
}

json TrustVector::to_json() const {
  json out = json::object();
  for (const VectorMember& m : kVectorMembers) {
    if (const std::optional<int>& v = this->*m.field) out[std::string(m.name)] = *v;
  }
  return out;
}

Result<TrustVector> TrustVector::from_json(const json& value) {
  if (!value.is_object()) return Error(Errc::kFormat, "not a JSON object");
  if (value.empty()) return Error(Errc::kFormat, "empty (omit it instead)");
  TrustVector out;
  for (const auto& [name, claim] : value.items()) {
    const VectorMember* member = nullptr;
    for (const VectorMember& m : kVectorMembers) {
      if (m.name == name) member = &m;
    }
    if (member == nullptr) {
      return Error(Errc::kFormat, "unknown trustworthiness claim " + in_quotes(name));
    }
    // Integers only: 2.0 or "2" are not AR4SI claims.
    if (!claim.is_number_integer()) {
      return Error(Errc::kFormat, in_quotes(name) + " is not an integer");
    }
    bool in_range =
        claim.is_number_unsigned()
            ? claim.get<std::uint64_t>() <= static_cast<std::uint64_t>(ar4si::kMax)
            : claim.get<std::int64_t>() >= ar4si::kMin && claim.get<std::int64_t>() <= ar4si::kMax;
    if (!in_range) return Error(Errc::kFormat, in_quotes(name) + " is outside -128..127");
    out.*(member->field) = static_cast<int>(claim.get<std::int64_t>());
  }
  return out;
}

json Reason::to_json() const {
  json out = {{"code", code}, {"message", message}};
  if (entry) out["entry"] = *entry;
  if (!rule.empty()) out["rule"] = rule;
  if (!quote.empty()) out["quote"] = quote;
  return out;
}

Result<Reason> Reason::from_json(const json& value) {
  if (!value.is_object()) return Error(Errc::kFormat, "not a JSON object");
  Reason r;
  bool has_code = false;
  for (const auto& [name, member] : value.items()) {
    if (name == "entry") {
      if (!member.is_number_unsigned()) {
        return Error(Errc::kFormat, "\"entry\" is not a non-negative integer");
      }
      r.entry = member.get<std::uint64_t>();
      continue;
    }
    std::string* field = name == "code"      ? &r.code
                         : name == "message" ? &r.message
                         : name == "rule"    ? &r.rule
                         : name == "quote"   ? &r.quote
                                             : nullptr;
    if (field == nullptr) return Error(Errc::kFormat, "unknown member " + in_quotes(name));
    if (!member.is_string()) return Error(Errc::kFormat, in_quotes(name) + " is not a string");
    *field = member.get<std::string>();
    if (name == "code") has_code = true;
  }
  if (!has_code || r.code.empty()) return Error(Errc::kFormat, "no \"code\"");
  return r;
}

json Ear::to_claims() const {
  json out = extra.is_object() ? extra : json::object();
  out[std::string(kProfileClaim)] = profile;
  out[std::string(kIatClaim)] = iat;
  out[std::string(kVerifierIdClaim)] = {{"developer", verifier_id.developer},
                                        {"build", verifier_id.build}};
  if (!raw_evidence.empty()) out[std::string(kRawEvidenceClaim)] = base64url_encode(raw_evidence);
  if (nonce) out[std::string(kNonceClaim)] = *nonce;
  json submods_json = json::object();
  for (const Submod& s : submods) {
    json appraisal = s.extra.is_object() ? s.extra : json::object();
    appraisal[std::string(kStatusClaim)] = status_name(s.status);
    if (!s.vector.empty()) appraisal[std::string(kVectorClaim)] = s.vector.to_json();
    if (!s.policy_id.empty()) appraisal[std::string(kPolicyIdClaim)] = s.policy_id;
    if (!s.reasons.empty()) {
      json reasons = json::array();
      for (const Reason& r : s.reasons) reasons.push_back(r.to_json());
      appraisal[std::string(kEarReasonsClaim)] = std::move(reasons);
    }
    submods_json[s.name] = std::move(appraisal);
  }
  out[std::string(kSubmodsClaim)] = std::move(submods_json);
  return out;
}

Result<Ear> Ear::from_claims(const json& claims) {
  if (!claims.is_object()) return Error(Errc::kFormat, "EAR claims are not a JSON object");
  Ear ear;
  auto profile = claims.find(kProfileClaim);
  if (profile == claims.end()) return format_error("eat_profile", "missing");
  CTRUST_ASSIGN_OR_RETURN(ear.profile, get_string(*profile, "eat_profile"));
  if (ear.profile != kEarProfile) {
    return Error(Errc::kUnsupported, "EAR eat_profile " + in_quotes(ear.profile) +
                                         " is not supported (expected " + in_quotes(kEarProfile) +
                                         ")");
  }
  auto iat = claims.find(kIatClaim);
  if (iat == claims.end()) return format_error("iat", "missing");
  // EAT forbids floating-point times; unsigned values above INT64_MAX do not fit.
  if (!iat->is_number_integer() ||
      (iat->is_number_unsigned() &&
       iat->get<std::uint64_t>() >
           static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))) {
    return format_error("iat", "not an integer number of seconds");
  }
  ear.iat = iat->get<std::int64_t>();

  auto verifier = claims.find(kVerifierIdClaim);
  if (verifier == claims.end()) return format_error("ear.verifier-id", "missing");
  if (!verifier->is_object()) return format_error("ear.verifier-id", "not a JSON object");
  for (const auto& [name, value] : verifier->items()) {
    const std::string path = "ear.verifier-id." + printable(name, 64);
    if (name == "developer") {
      CTRUST_ASSIGN_OR_RETURN(ear.verifier_id.developer, get_string(value, path));
    } else if (name == "build") {
      CTRUST_ASSIGN_OR_RETURN(ear.verifier_id.build, get_string(value, path));
    } else {
      return format_error(path, "unknown member");
    }
  }

  auto submods = claims.find(kSubmodsClaim);
  if (submods == claims.end()) return format_error("submods", "missing");
  if (!submods->is_object()) return format_error("submods", "not a JSON object");
  for (const auto& [name, value] : submods->items()) {
    CTRUST_ASSIGN_OR_RETURN(Submod s, submod_from_json(name, value));
    ear.submods.push_back(std::move(s));
  }

  for (const auto& [name, value] : claims.items()) {
    if (name == kRawEvidenceClaim) {
      CTRUST_ASSIGN_OR_RETURN(std::string text, get_string(value, name));
      auto bytes = base64url_decode(text);
      if (!bytes) return std::move(bytes).error().with_context("EAR ear.raw-evidence");
      if (bytes->empty()) return format_error(name, "empty");
      ear.raw_evidence = std::move(bytes).value();
    } else if (name == kNonceClaim) {
      CTRUST_ASSIGN_OR_RETURN(std::string text, get_string(value, name));
      ear.nonce = std::move(text);
    } else if (!is_one_of(name, kTopLevelClaims)) {
      ear.extra[name] = value;
    }
  }
  CTRUST_TRY(check(ear, Errc::kFormat));
  return ear;
}

Status Ear::overall() const {
  if (submods.empty()) return Status::kNone;
  Status worst = Status::kAffirming;
  for (const Submod& s : submods) worst = worse_of(worst, s.status);
  return worst;
}

const Submod* Ear::find_submod(std::string_view name) const {
  for (const Submod& s : submods) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

Result<void> validate(const Ear& ear) { return check(ear, Errc::kInvalidArgument); }

Result<std::string> sign_ear(const Ear& ear, const crypto::PrivateKey& key, std::string_view kid) {
  CTRUST_TRY(validate(ear));
  json header = json::object();
  if (!kid.empty()) header["kid"] = kid;
  return sign_jwt(header, ear.to_claims(), key);
}

Result<Ear> verify_ear(std::string_view jwt, const crypto::PublicKey& key) {
  CTRUST_ASSIGN_OR_RETURN(VerifiedJwt verified, verify_jwt(jwt, key));
  return Ear::from_claims(verified.claims);
}

}  // namespace ctrust::attest
