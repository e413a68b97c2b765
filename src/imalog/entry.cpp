#include "imalog/entry.h"

#include <algorithm>
#include <array>
#include <cstring>

#include "util/endian.h"

namespace ctrust::imalog {
namespace {

using crypto::digest_size;
using crypto::hash_name;

const std::array<TemplateDesc, 7>& templates() {
  static const std::array<TemplateDesc, 7> kTemplates = {{
      {"ima-ng", {FieldId::kDng, FieldId::kNng}, false},
      {"ima-sig", {FieldId::kDng, FieldId::kNng, FieldId::kSig}, false},
      {"ima-buf", {FieldId::kDng, FieldId::kNng, FieldId::kBuf}, false},
      {"ima-ngv2", {FieldId::kDngV2, FieldId::kNng}, false},
      {"ima-sigv2", {FieldId::kDngV2, FieldId::kNng, FieldId::kSig}, false},
      {"ima-modsig",
       {FieldId::kDng, FieldId::kNng, FieldId::kSig, FieldId::kDModsig, FieldId::kModsig},
       false},
      {"ima", {FieldId::kD, FieldId::kN}, true},
  }};
  return kTemplates;
}

// A non-empty run of [A-Za-z0-9_-], at most `max` long: algorithm and digest-type names.
bool is_word(std::string_view s, std::size_t max) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_';
  });
}

std::string_view as_string_view(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

Error field_error(const Entry& e, FieldId id, const std::string& what) {
  return Error(Errc::kFormat, "template " + e.template_name + ", field " +
                                  std::string(field_name(id)) + ": " + what);
}

// "[type:]alg:" NUL digest. An empty field is allowed only where `allow_empty`.
Result<void> parse_prefixed_digest(const Entry& e, FieldId id, ByteView raw, bool with_type,
                                   std::string_view* type, std::string_view* alg,
                                   ByteView* digest) {
  auto nul = std::find(raw.begin(), raw.end(), std::uint8_t{0});
  if (nul == raw.end()) return field_error(e, id, "no NUL after the algorithm prefix");
  std::string_view prefix = as_string_view(raw.first(static_cast<std::size_t>(nul - raw.begin())));
  if (prefix.empty() || prefix.back() != ':') {
    return field_error(e, id, "algorithm prefix does not end with ':'");
  }
  prefix.remove_suffix(1);
  if (with_type) {
    std::size_t colon = prefix.find(':');
    if (colon == std::string_view::npos) return field_error(e, id, "no digest type");
    *type = prefix.substr(0, colon);
    prefix = prefix.substr(colon + 1);
    if (!is_word(*type, 16)) return field_error(e, id, "bad digest type");
  }
  if (!is_word(prefix, 32)) return field_error(e, id, "bad algorithm name");
  *alg = prefix;
  *digest = raw.subspan(static_cast<std::size_t>(nul - raw.begin()) + 1);
  if (auto known = crypto::parse_hash_alg(*alg); known && digest->size() != digest_size(*known)) {
    return field_error(e, id,
                       std::string(*alg) + " digest has " + std::to_string(digest->size()) +
                           " bytes, expected " + std::to_string(digest_size(*known)));
  }
  if (digest->empty() || digest->size() > crypto::kMaxDigestSize) {
    return field_error(e, id, "digest length " + std::to_string(digest->size()) + " is invalid");
  }
  return ok_result();
}

Result<void> parse_name(const Entry& e, FieldId id, ByteView raw, std::string_view* name) {
  if (raw.empty() || raw.back() != 0) return field_error(e, id, "name is not NUL-terminated");
  if (raw.size() > kMaxEventNameLen) {
    return field_error(e, id,
                       "name of " + std::to_string(raw.size()) + " bytes exceeds the limit of " +
                           std::to_string(kMaxEventNameLen));
  }
  std::string_view s = as_string_view(raw.first(raw.size() - 1));
  if (s.find('\0') != std::string_view::npos) return field_error(e, id, "name has an embedded NUL");
  *name = s;
  return ok_result();
}

Result<Fields> parse_legacy(const Entry& e) {
  Fields f;
  const Bytes& d = e.data;
  if (d.size() < 24) return Error(Errc::kFormat, "template ima: record shorter than 24 bytes");
  std::uint32_t len = load32(e.order == ByteOrder::kBig, d.data() + 20);
  if (len > kLegacyNameMax) {
    return Error(Errc::kFormat,
                 "template ima: name length " + std::to_string(len) + " exceeds the limit of 255");
  }
  if (d.size() != 24 + static_cast<std::size_t>(len)) {
    return Error(Errc::kFormat, "template ima: name length does not match the record");
  }
  f.digest_alg = "sha1";
  f.file_digest = ByteView(d.data(), 20);
  f.name = as_string_view(ByteView(d.data() + 24, len));
  if (f.name.find('\0') != std::string_view::npos) {
    return Error(Errc::kFormat, "template ima: name has an embedded NUL");
  }
  return f;
}

void append_field(Bytes& out, ByteView bytes) {
  append_le32(out, static_cast<std::uint32_t>(bytes.size()));
  out.insert(out.end(), bytes.begin(), bytes.end());
}

void append_prefixed_digest(Bytes& out, const Digest& d) {
  std::string prefix(hash_name(d.alg));
  prefix += ':';
  append_le32(out, static_cast<std::uint32_t>(prefix.size() + 1 + d.size()));
  out.insert(out.end(), prefix.begin(), prefix.end());
  out.push_back(0);
  out.insert(out.end(), d.view().begin(), d.view().end());
}

std::string kernel_name(std::string_view name) {
  std::string s(name);
  std::replace(s.begin(), s.end(), ' ', '_');
  return s;
}

Result<Entry> build_entry(const MeasurementSpec& spec, HashAlg header_bank, bool violation) {
  const TemplateDesc* desc = find_template(spec.template_name);
  if (desc == nullptr) {
    return Error(Errc::kInvalidArgument, "unknown template '" + spec.template_name + "'");
  }
  if (spec.pcr > kMaxPcrIndex) {
    return Error(Errc::kInvalidArgument,
                 "PCR index " + std::to_string(spec.pcr) + " is out of range 0-23");
  }
  std::string name = kernel_name(spec.name);
  if (name.find('\0') != std::string::npos || name.find('\n') != std::string::npos) {
    return Error(Errc::kInvalidArgument, "event name contains a NUL or newline");
  }
  Entry e;
  e.pcr = spec.pcr;
  e.template_name = spec.template_name;
  if (desc->legacy) {
    if (spec.file_digest.alg != HashAlg::kSha1) {
      return Error(Errc::kInvalidArgument, "the ima template records sha1 file digests only");
    }
    if (name.size() > kLegacyNameMax) name.resize(kLegacyNameMax);  // as the kernel truncates
    e.data.insert(e.data.end(), spec.file_digest.view().begin(), spec.file_digest.view().end());
    append_field(e.data, as_bytes(name));
  } else {
    if (name.size() + 1 > kMaxEventNameLen) {
      return Error(Errc::kInvalidArgument,
                   "event name longer than " + std::to_string(kMaxEventNameLen - 1) + " bytes");
    }
    for (FieldId id : desc->fields) {
      switch (id) {
        case FieldId::kDng:
          append_prefixed_digest(e.data, spec.file_digest);
          break;
        case FieldId::kNng: {
          append_le32(e.data, static_cast<std::uint32_t>(name.size() + 1));
          e.data.insert(e.data.end(), name.begin(), name.end());
          e.data.push_back(0);
          break;
        }
        case FieldId::kSig:
          append_field(e.data, spec.sig);
          break;
        case FieldId::kBuf:
          append_field(e.data, spec.buf);
          break;
        default:
          return Error(Errc::kUnsupported, "ctrust does not write template " + spec.template_name);
      }
    }
  }
  if (e.data.size() > kMaxTemplateDataLen) {
    return Error(Errc::kInvalidArgument, "template data exceeds the 1 MiB limit");
  }
  if (violation) {
    e.template_digest = Digest::zero(header_bank);
  } else {
    CTRUST_ASSIGN_OR_RETURN(e.template_digest, template_digest(e, header_bank));
  }
  return e;
}

}  // namespace

const TemplateDesc* find_template(std::string_view name) {
  for (const TemplateDesc& t : templates()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string_view field_name(FieldId id) {
  switch (id) {
    case FieldId::kD:
      return "d";
    case FieldId::kN:
      return "n";
    case FieldId::kDng:
      return "d-ng";
    case FieldId::kDngV2:
      return "d-ngv2";
    case FieldId::kNng:
      return "n-ng";
    case FieldId::kSig:
      return "sig";
    case FieldId::kBuf:
      return "buf";
    case FieldId::kDModsig:
      return "d-modsig";
    case FieldId::kModsig:
      return "modsig";
  }
  return "?";
}

std::optional<Digest> Fields::file_digest_value() const {
  auto alg = crypto::parse_hash_alg(digest_alg);
  if (!alg) return std::nullopt;
  auto d = Digest::from_bytes(*alg, file_digest);
  if (!d) return std::nullopt;
  return *d;
}

Result<Fields> parse_fields(const Entry& e) {
  const TemplateDesc* desc = find_template(e.template_name);
  if (desc == nullptr) {
    return Error(Errc::kUnsupported, "unknown template '" + e.template_name + "'");
  }
  if (desc->legacy) return parse_legacy(e);
  Fields f;
  ByteView rest(e.data);
  for (FieldId id : desc->fields) {
    if (rest.size() < 4) return field_error(e, id, "missing (template data too short)");
    std::uint32_t len = load32(e.order == ByteOrder::kBig, rest.data());
    rest = rest.subspan(4);
    if (len > rest.size()) {
      return field_error(e, id, "length " + std::to_string(len) + " runs past the template data");
    }
    ByteView raw = rest.first(len);
    rest = rest.subspan(len);
    switch (id) {
      case FieldId::kDng:
        CTRUST_TRY(
            parse_prefixed_digest(e, id, raw, false, nullptr, &f.digest_alg, &f.file_digest));
        break;
      case FieldId::kDngV2:
        CTRUST_TRY(
            parse_prefixed_digest(e, id, raw, true, &f.digest_type, &f.digest_alg, &f.file_digest));
        break;
      case FieldId::kNng:
        CTRUST_TRY(parse_name(e, id, raw, &f.name));
        break;
      case FieldId::kSig:
        f.sig = raw;
        break;
      case FieldId::kBuf:
        f.buf = raw;
        break;
      case FieldId::kDModsig:
        if (!raw.empty()) {
          CTRUST_TRY(parse_prefixed_digest(e, id, raw, false, nullptr, &f.dmodsig_alg, &f.dmodsig));
        }
        break;
      case FieldId::kModsig:
        f.modsig = raw;
        break;
      case FieldId::kD:
      case FieldId::kN:
        return Error(Errc::kInternal, "legacy field in a non-legacy template");
    }
  }
  if (!rest.empty()) {
    return Error(Errc::kFormat, "template " + e.template_name + ": " + std::to_string(rest.size()) +
                                    " bytes after the last field");
  }
  return f;
}

Result<Digest> template_digest(const Entry& e, HashAlg bank) {
  const TemplateDesc* desc = find_template(e.template_name);
  if (desc != nullptr && desc->legacy) {
    if (e.data.size() < 24)
      return Error(Errc::kFormat, "template ima: record shorter than 24 bytes");
    std::uint32_t len = load32(e.order == ByteOrder::kBig, e.data.data() + 20);
    if (len > kLegacyNameMax || e.data.size() != 24 + static_cast<std::size_t>(len)) {
      return Error(Errc::kFormat, "template ima: bad name length");
    }
    std::uint8_t padded[20 + kLegacyNameMax + 1] = {};
    std::memcpy(padded, e.data.data(), 20);
    std::memcpy(padded + 20, e.data.data() + 24, len);
    return crypto::digest_bytes(bank, ByteView(padded, sizeof(padded)));
  }
  return crypto::digest_bytes(bank, e.data);
}

Result<Entry> make_entry(const MeasurementSpec& spec, HashAlg header_bank) {
  return build_entry(spec, header_bank, false);
}

Result<Entry> make_violation(std::string_view template_name, std::uint32_t pcr,
                             std::string_view name, HashAlg file_alg, HashAlg header_bank) {
  MeasurementSpec spec;
  spec.template_name = std::string(template_name);
  spec.pcr = pcr;
  spec.name = std::string(name);
  const TemplateDesc* desc = find_template(template_name);
  spec.file_digest = Digest::zero(desc != nullptr && desc->legacy ? HashAlg::kSha1 : file_alg);
  return build_entry(spec, header_bank, true);
}

}  // namespace ctrust::imalog
