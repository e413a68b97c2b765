#include "tpm/pcr.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "util/text.h"

namespace ctrust::tpm {
namespace {

Error format_error(const std::string& message) { return {Errc::kFormat, message}; }

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    auto pos = text.find(sep, start);
    parts.push_back(text.substr(start, pos == std::string_view::npos ? pos : pos - start));
    if (pos == std::string_view::npos) return parts;
    start = pos + 1;
  }
}

Result<unsigned> parse_index(std::string_view text) {
  unsigned value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || ptr != end || value >= kPcrCount) {
    return Error(Errc::kInvalidArgument, "bad PCR index '" + printable(text) + "' (expected 0-23)");
  }
  return value;
}

void append_le(Bytes& out, std::uint64_t value, int size) {
  for (int i = 0; i < size; ++i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

class LeReader {
 public:
  explicit LeReader(ByteView bytes) : bytes_(bytes) {}
  Result<std::uint64_t> read(std::size_t size, const char* what) {
    if (bytes_.size() - pos_ < size) {
      return Error(Errc::kTruncated, std::string("PCR file ends inside ") + what);
    }
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < size; ++i) value |= std::uint64_t{bytes_[pos_ + i]} << (8 * i);
    pos_ += size;
    return value;
  }
  Result<ByteView> take(std::size_t size, const char* what) {
    if (bytes_.size() - pos_ < size) {
      return Error(Errc::kTruncated, std::string("PCR file ends inside ") + what);
    }
    ByteView view = bytes_.subspan(pos_, size);
    pos_ += size;
    return view;
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  ByteView bytes_;
  std::size_t pos_ = 0;
};

// Sizes of the C structs as tpm2-tools writes them (x86-64 and every ABI Debian ships:
// TPMS_PCR_SELECTION is 7 bytes padded to 8; TPM2B_DIGEST is 2 + 64).
constexpr std::size_t kSelectionStructSize = 8;
constexpr std::size_t kDigestStructSize = 2 + sizeof(TPMU_HA);
constexpr std::size_t kDigestsPerList = 8;

}  // namespace

TPM2_ALG_ID tpm_alg(crypto::HashAlg alg) {
  switch (alg) {
    case crypto::HashAlg::kSha1:
      return TPM2_ALG_SHA1;
    case crypto::HashAlg::kSha256:
      return TPM2_ALG_SHA256;
    case crypto::HashAlg::kSha384:
      return TPM2_ALG_SHA384;
    case crypto::HashAlg::kSha512:
      return TPM2_ALG_SHA512;
  }
  return TPM2_ALG_NULL;
}

Result<crypto::HashAlg> hash_alg_from_tpm(TPM2_ALG_ID alg) {
  switch (alg) {
    case TPM2_ALG_SHA1:
      return crypto::HashAlg::kSha1;
    case TPM2_ALG_SHA256:
      return crypto::HashAlg::kSha256;
    case TPM2_ALG_SHA384:
      return crypto::HashAlg::kSha384;
    case TPM2_ALG_SHA512:
      return crypto::HashAlg::kSha512;
    default:
      return Error(Errc::kUnsupported, "unsupported TPM hash algorithm " + std::to_string(alg));
  }
}

Result<PcrSelection> parse_pcr_list(std::string_view text) {
  PcrSelection selection;
  if (text.empty()) return Error(Errc::kInvalidArgument, "empty PCR list");
  for (std::string_view bank_text : split(text, '+')) {
    auto colon = bank_text.find(':');
    if (colon == std::string_view::npos) {
      return Error(Errc::kInvalidArgument, "bad PCR list '" + printable(text) +
                                               "' (expected BANK:INDICES, e.g. sha256:10,16)");
    }
    auto alg = crypto::parse_hash_alg(bank_text.substr(0, colon));
    if (!alg) {
      return Error(Errc::kInvalidArgument, "unknown PCR bank '" +
                                               printable(bank_text.substr(0, colon)) +
                                               "' (expected sha1, sha256, sha384 or sha512)");
    }
    for (const auto& bank : selection) {
      if (bank.alg == *alg) {
        return Error(Errc::kInvalidArgument,
                     "PCR bank " + std::string(crypto::hash_name(*alg)) + " listed twice");
      }
    }
    PcrBank bank{*alg, {}};
    std::string_view indices = bank_text.substr(colon + 1);
    if (indices == "all") {
      for (unsigned i = 0; i < kPcrCount; ++i) bank.pcrs.push_back(i);
    } else {
      for (std::string_view item : split(indices, ',')) {
        auto dash = item.find('-');
        if (dash == std::string_view::npos) {
          CTRUST_ASSIGN_OR_RETURN(unsigned index, parse_index(item));
          bank.pcrs.push_back(index);
          continue;
        }
        CTRUST_ASSIGN_OR_RETURN(unsigned first, parse_index(item.substr(0, dash)));
        CTRUST_ASSIGN_OR_RETURN(unsigned last, parse_index(item.substr(dash + 1)));
        if (last < first) {
          return Error(Errc::kInvalidArgument, "bad PCR range '" + printable(item) + "'");
        }
        for (unsigned i = first; i <= last; ++i) bank.pcrs.push_back(i);
      }
    }
    std::sort(bank.pcrs.begin(), bank.pcrs.end());
    bank.pcrs.erase(std::unique(bank.pcrs.begin(), bank.pcrs.end()), bank.pcrs.end());
    selection.push_back(std::move(bank));
  }
  if (selection.size() > TPM2_NUM_PCR_BANKS) {
    return Error(Errc::kInvalidArgument, "too many PCR banks");
  }
  return selection;
}

std::string format_pcr_list(const PcrSelection& selection) {
  std::string out;
  for (const auto& bank : selection) {
    if (!out.empty()) out += '+';
    out += crypto::hash_name(bank.alg);
    out += ':';
    for (std::size_t i = 0; i < bank.pcrs.size(); ++i) {
      if (i > 0) out += ',';
      out += std::to_string(bank.pcrs[i]);
    }
  }
  return out;
}

std::size_t pcr_count(const PcrSelection& selection) {
  std::size_t n = 0;
  for (const auto& bank : selection) n += bank.pcrs.size();
  return n;
}

TPML_PCR_SELECTION to_tpml(const PcrSelection& selection) {
  TPML_PCR_SELECTION out{};
  for (const auto& bank : selection) {
    if (out.count >= TPM2_NUM_PCR_BANKS) break;
    TPMS_PCR_SELECTION& s = out.pcrSelections[out.count++];
    s.hash = tpm_alg(bank.alg);
    s.sizeofSelect = 3;
    for (unsigned pcr : bank.pcrs) {
      s.pcrSelect[pcr / 8] = static_cast<BYTE>(s.pcrSelect[pcr / 8] | (1U << (pcr % 8)));
    }
  }
  return out;
}

Result<PcrSelection> from_tpml(const TPML_PCR_SELECTION& selection) {
  if (selection.count > TPM2_NUM_PCR_BANKS) return format_error("too many PCR banks");
  PcrSelection out;
  for (std::uint32_t b = 0; b < selection.count; ++b) {
    const TPMS_PCR_SELECTION& s = selection.pcrSelections[b];
    CTRUST_ASSIGN_OR_RETURN(crypto::HashAlg alg, hash_alg_from_tpm(s.hash));
    if (s.sizeofSelect > sizeof(s.pcrSelect)) return format_error("bad PCR selection size");
    for (const auto& bank : out) {
      if (bank.alg == alg) return format_error("PCR bank listed twice in a selection");
    }
    PcrBank bank{alg, {}};
    for (unsigned byte = 0; byte < s.sizeofSelect; ++byte) {
      for (unsigned bit = 0; bit < 8; ++bit) {
        if ((s.pcrSelect[byte] >> bit) & 1U) {
          unsigned pcr = byte * 8 + bit;
          if (pcr >= kPcrCount) return format_error("PCR index beyond 23 selected");
          bank.pcrs.push_back(pcr);
        }
      }
    }
    out.push_back(std::move(bank));
  }
  return out;
}

Result<crypto::Digest> pcr_digest(crypto::HashAlg alg, const PcrValues& values) {
  CTRUST_ASSIGN_OR_RETURN(crypto::Hasher hasher, crypto::Hasher::create(alg));
  for (const auto& value : values.values) CTRUST_TRY(hasher.update(value.view()));
  return hasher.finish();
}

Bytes encode_pcr_file(const PcrValues& values) {
  Bytes out;
  TPML_PCR_SELECTION tpml = to_tpml(values.selection);
  append_le(out, tpml.count, 4);
  for (const TPMS_PCR_SELECTION& s : tpml.pcrSelections) {
    append_le(out, s.hash, 2);
    out.push_back(s.sizeofSelect);
    out.insert(out.end(), std::begin(s.pcrSelect), std::end(s.pcrSelect));
    out.push_back(0);  // struct padding
  }
  std::size_t lists = (values.values.size() + kDigestsPerList - 1) / kDigestsPerList;
  append_le(out, lists, 4);
  for (std::size_t l = 0; l < lists; ++l) {
    std::size_t first = l * kDigestsPerList;
    std::size_t count = std::min(kDigestsPerList, values.values.size() - first);
    append_le(out, count, 4);
    for (std::size_t i = 0; i < kDigestsPerList; ++i) {
      std::uint8_t buffer[sizeof(TPMU_HA)] = {};
      std::size_t size = 0;
      if (i < count) {
        const crypto::Digest& d = values.values[first + i];
        size = d.size();
        std::memcpy(buffer, d.bytes.data(), size);
      }
      append_le(out, size, 2);
      out.insert(out.end(), std::begin(buffer), std::end(buffer));
    }
  }
  return out;
}

Result<PcrValues> decode_pcr_file(ByteView bytes) {
  LeReader in(bytes);
  TPML_PCR_SELECTION tpml{};
  CTRUST_ASSIGN_OR_RETURN(std::uint64_t bank_count, in.read(4, "the PCR selection"));
  if (bank_count > TPM2_NUM_PCR_BANKS) return format_error("PCR file selects too many banks");
  tpml.count = static_cast<std::uint32_t>(bank_count);
  for (TPMS_PCR_SELECTION& s : tpml.pcrSelections) {
    CTRUST_ASSIGN_OR_RETURN(ByteView raw, in.take(kSelectionStructSize, "the PCR selection"));
    s.hash = static_cast<TPMI_ALG_HASH>(raw[0] | (raw[1] << 8));
    s.sizeofSelect = raw[2];
    std::memcpy(s.pcrSelect, raw.data() + 3, sizeof(s.pcrSelect));
  }
  PcrValues values;
  CTRUST_ASSIGN_OR_RETURN(values.selection, from_tpml(tpml));
  std::size_t expected = pcr_count(values.selection);
  CTRUST_ASSIGN_OR_RETURN(std::uint64_t lists, in.read(4, "the digest list count"));
  constexpr std::size_t kMaxValues = std::size_t{kPcrCount} * TPM2_NUM_PCR_BANKS;
  if (lists > (kMaxValues + kDigestsPerList - 1) / kDigestsPerList) {
    return format_error("PCR file has too many digest lists");
  }
  // Digests are matched to selected PCRs in order: bank by bank, PCR by PCR.
  std::vector<crypto::HashAlg> algs;
  for (const auto& bank : values.selection) algs.insert(algs.end(), bank.pcrs.size(), bank.alg);
  for (std::uint64_t l = 0; l < lists; ++l) {
    CTRUST_ASSIGN_OR_RETURN(std::uint64_t count, in.read(4, "a digest list"));
    if (count > kDigestsPerList) return format_error("PCR file digest list holds more than 8");
    for (std::size_t i = 0; i < kDigestsPerList; ++i) {
      CTRUST_ASSIGN_OR_RETURN(std::uint64_t size, in.read(2, "a digest"));
      CTRUST_ASSIGN_OR_RETURN(ByteView buffer, in.take(sizeof(TPMU_HA), "a digest"));
      if (i >= count) continue;
      if (values.values.size() >= algs.size()) {
        return format_error("PCR file holds more values than its selection");
      }
      crypto::HashAlg alg = algs[values.values.size()];
      if (size != crypto::digest_size(alg)) {
        return format_error("PCR file value of " + std::to_string(size) + " bytes in the " +
                            std::string(crypto::hash_name(alg)) + " bank");
      }
      CTRUST_ASSIGN_OR_RETURN(crypto::Digest d,
                              crypto::Digest::from_bytes(alg, buffer.subspan(0, size)));
      values.values.push_back(d);
    }
  }
  if (!in.done()) return format_error("PCR file has trailing bytes");
  if (values.values.size() != expected) {
    return format_error("PCR file holds " + std::to_string(values.values.size()) + " values for " +
                        std::to_string(expected) + " selected PCRs");
  }
  return values;
}

}  // namespace ctrust::tpm
