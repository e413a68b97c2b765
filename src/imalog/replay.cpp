#include "imalog/replay.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "util/text.h"

namespace ctrust::imalog {
namespace {

using crypto::digest_size;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

Result<Digest> parse_pcr_value(std::string_view hex, std::optional<HashAlg> bank,
                               std::size_t line_no) {
  if (hex.substr(0, 2) == "0x" || hex.substr(0, 2) == "0X") hex.remove_prefix(2);
  auto alg = bank ? bank : crypto::hash_alg_for_size(hex.size() / 2);
  if (!alg || hex.size() != 2 * digest_size(*alg)) {
    return Error(Errc::kFormat, "line " + std::to_string(line_no) + ": a PCR value of " +
                                    std::to_string(hex.size()) + " hex digits does not fit " +
                                    (bank ? "the " + std::string(crypto::hash_name(*bank)) + " bank"
                                          : std::string("any bank")));
  }
  auto d = Digest::from_hex(*alg, hex);
  if (!d) return std::move(d).error().with_context("line " + std::to_string(line_no));
  return d;
}

}  // namespace

Replayer::Replayer(const std::vector<HashAlg>& banks, const std::vector<HashAlg>& sha1_padded) {
  for (HashAlg alg : banks) {
    PcrBank b;
    b.alg = alg;
    b.values.fill(Digest::zero(alg));
    banks_.push_back(b);
    padded_.push_back(alg != HashAlg::kSha1 &&
                      std::find(sha1_padded.begin(), sha1_padded.end(), alg) != sha1_padded.end());
  }
}

const PcrBank* Replayer::bank(HashAlg alg) const {
  for (const PcrBank& b : banks_) {
    if (b.alg == alg) return &b;
  }
  return nullptr;
}

Result<EntryStatus> Replayer::add(const Entry& e) {
  if (e.pcr > kMaxPcrIndex) {
    return Error(Errc::kFormat, "PCR index " + std::to_string(e.pcr) + " is out of range 0-23");
  }
  CTRUST_ASSIGN_OR_RETURN(Fields fields, parse_fields(e));
  EntryStatus status = EntryStatus::kOk;
  // The logged digest covers the data in its own bank; recomputing it is the re-check.
  std::optional<Digest> header_bank_digest;
  std::optional<Digest> sha1_digest;
  if (e.is_violation()) {
    if (std::any_of(fields.file_digest.begin(), fields.file_digest.end(),
                    [](std::uint8_t b) { return b != 0; })) {
      return Error(Errc::kFormat,
                   "violation record (zero template digest) with a non-zero file digest");
    }
    status = EntryStatus::kViolation;
  } else {
    CTRUST_ASSIGN_OR_RETURN(Digest d, template_digest(e, e.template_digest.alg));
    if (!(d == e.template_digest)) status = EntryStatus::kBadTemplateDigest;
    header_bank_digest = d;
  }
  for (std::size_t i = 0; i < banks_.size(); ++i) {
    PcrBank& b = banks_[i];
    Digest& pcr = b.values[e.pcr];
    Digest td = Digest::zero(b.alg);
    if (status == EntryStatus::kViolation) {
      std::fill(td.bytes.begin(), td.bytes.begin() + static_cast<std::ptrdiff_t>(td.size()), 0xff);
    } else if (padded_[i]) {
      if (!sha1_digest) {
        if (header_bank_digest && header_bank_digest->alg == HashAlg::kSha1) {
          sha1_digest = header_bank_digest;
        } else {
          CTRUST_ASSIGN_OR_RETURN(sha1_digest, template_digest(e, HashAlg::kSha1));
        }
      }
      std::memcpy(td.bytes.data(), sha1_digest->bytes.data(), digest_size(HashAlg::kSha1));
    } else if (header_bank_digest && header_bank_digest->alg == b.alg) {
      td = *header_bank_digest;
    } else {
      CTRUST_ASSIGN_OR_RETURN(td, template_digest(e, b.alg));
    }
    CTRUST_ASSIGN_OR_RETURN(pcr, crypto::digest_concat(b.alg, pcr.view(), td.view()));
    b.extended |= 1u << e.pcr;
  }
  return status;
}

Result<ExpectedPcrs> parse_pcr_file(std::string_view text, std::optional<HashAlg> bank) {
  ExpectedPcrs out;
  std::optional<HashAlg> section;  // tpm2_pcrread: the bank of the lines that follow
  std::size_t line_no = 0;
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    std::uint32_t index = 0;
    std::string_view value;
    if (line.substr(0, 4) == "PCR-") {
      std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) {
        return Error(Errc::kFormat, "line " + std::to_string(line_no) + ": expected PCR-NN: HEX");
      }
      std::string_view num = line.substr(4, colon - 4);
      auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), index);
      if (ec != std::errc() || p != num.data() + num.size()) {
        return Error(Errc::kFormat, "line " + std::to_string(line_no) + ": bad PCR number");
      }
      value = trim(line.substr(colon + 1));
      if (!bank && section) bank = section;
    } else if (line.back() == ':' && line.find(' ') == std::string_view::npos) {
      auto alg = crypto::parse_hash_alg(line.substr(0, line.size() - 1));
      if (!alg) {
        return Error(Errc::kFormat, "line " + std::to_string(line_no) + ": unknown bank '" +
                                        printable(line.substr(0, line.size() - 1)) + "'");
      }
      section = alg;
      continue;
    } else {
      // tpm2_pcrread: "N : 0xHEX" (or "N: 0xHEX") inside a bank section.
      std::size_t colon = line.find(':');
      if (colon == std::string_view::npos || !section) {
        return Error(Errc::kFormat, "line " + std::to_string(line_no) +
                                        ": expected 'PCR-NN: HEX' or tpm2_pcrread output");
      }
      std::string_view num = trim(line.substr(0, colon));
      auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), index);
      if (ec != std::errc() || p != num.data() + num.size()) {
        return Error(Errc::kFormat, "line " + std::to_string(line_no) + ": bad PCR number");
      }
      value = trim(line.substr(colon + 1));
    }
    if (index > kMaxPcrIndex) {
      return Error(Errc::kFormat, "line " + std::to_string(line_no) + ": PCR " +
                                      std::to_string(index) + " is out of range 0-23");
    }
    std::optional<HashAlg> line_bank = line.substr(0, 4) == "PCR-" ? bank : section;
    CTRUST_ASSIGN_OR_RETURN(Digest d, parse_pcr_value(value, line_bank, line_no));
    auto& values = out[d.alg];
    if (values.count(index) != 0) {
      return Error(Errc::kFormat, "line " + std::to_string(line_no) + ": PCR " +
                                      std::to_string(index) + " given twice");
    }
    values[index] = d;
  }
  if (out.empty()) return Error(Errc::kFormat, "no PCR values found");
  return out;
}

std::string format_pcr_lines(const PcrBank& bank) {
  std::string out;
  char label[16];
  for (std::size_t i = 0; i < kNumPcrs; ++i) {
    std::snprintf(label, sizeof(label), "PCR-%02zu: ", i);
    out += label;
    append_hex(out, bank.values[i].view());
    out += '\n';
  }
  return out;
}

namespace {

struct PassResult {
  std::vector<PcrBank> banks;
  std::uint64_t entries = 0;
  std::uint64_t violations = 0;
  std::vector<std::uint64_t> violation_entries;
  std::uint64_t bad = 0;
  std::vector<std::uint64_t> bad_entries;
};

Result<PassResult> replay_pass(const SourceFactory& open, const std::vector<HashAlg>& banks,
                               const std::vector<HashAlg>& padded,
                               const std::function<void(std::uint64_t)>& progress,
                               const std::string& name) {
  auto where = [&](Error e) {
    return name.empty() ? std::move(e) : std::move(e).with_context(name);
  };
  CTRUST_ASSIGN_OR_RETURN(std::unique_ptr<EntrySource> src, open());
  Replayer replayer(banks, padded);
  PassResult r;
  Entry e;
  std::uint64_t last_offset = 0;
  for (;;) {
    auto more = src->next(e);
    if (!more) return where(std::move(more).error());
    if (!*more) break;
    ++r.entries;
    auto status = replayer.add(e);
    if (!status) {
      return where(Error(status.error().code(),
                         "entry " + std::to_string(r.entries) + ": " + status.error().message()));
    }
    if (*status == EntryStatus::kViolation) {
      if (r.violation_entries.size() < VerifyReport::kMaxListed)
        r.violation_entries.push_back(r.entries);
      ++r.violations;
    } else if (*status == EntryStatus::kBadTemplateDigest) {
      if (r.bad_entries.size() < VerifyReport::kMaxListed) r.bad_entries.push_back(r.entries);
      ++r.bad;
    }
    if (progress && (r.entries & 0xffff) == 0) {
      progress(src->offset() - last_offset);
      last_offset = src->offset();
    }
  }
  if (progress) progress(src->offset() - last_offset);
  r.banks = replayer.banks();
  return r;
}

std::vector<PcrMismatch> compare(const PcrBank& bank,
                                 const std::map<std::uint32_t, Digest>& expected,
                                 std::uint32_t accounted) {
  std::vector<PcrMismatch> out;
  for (std::uint32_t i = 0; i < kNumPcrs; ++i) {
    if ((bank.extended & (1u << i)) == 0) {
      auto it = expected.find(i);
      if ((accounted & (1u << i)) != 0 && it != expected.end() && !it->second.is_zero()) {
        PcrMismatch m{bank.alg, i, Digest::zero(bank.alg), it->second};
        m.never_extended = true;
        out.push_back(m);
      }
      continue;
    }
    auto it = expected.find(i);
    if (it == expected.end()) {
      out.push_back({bank.alg, i, bank.values[i], std::nullopt});
    } else if (!(it->second == bank.values[i])) {
      out.push_back({bank.alg, i, bank.values[i], it->second});
    }
  }
  return out;
}

}  // namespace

Result<VerifyReport> verify_log(const SourceFactory& open, const ExpectedPcrs& expected,
                                const std::function<void(std::uint64_t)>& progress,
                                const std::string& source_name, std::uint32_t accounted) {
  std::vector<HashAlg> banks;
  for (const auto& [alg, values] : expected) banks.push_back(alg);
  if (banks.empty()) return Error(Errc::kInvalidArgument, "no PCR values to verify against");

  CTRUST_ASSIGN_OR_RETURN(PassResult first, replay_pass(open, banks, {}, progress, source_name));
  VerifyReport report;
  report.entries = first.entries;
  report.violations = first.violations;
  report.violation_entries = first.violation_entries;
  report.bad_template_digests = first.bad;
  report.bad_template_entries = first.bad_entries;
  report.replayed = first.banks;

  std::vector<HashAlg> retry;
  for (const PcrBank& b : first.banks) {
    auto mism = compare(b, expected.at(b.alg), accounted);
    // Only values that differ can be the kernel's SHA-1 padding: a PCR the log never
    // extends differs whatever the template digests are.
    bool only_value_mismatch =
        !mism.empty() && std::all_of(mism.begin(), mism.end(), [](const auto& m) {
          return m.expected.has_value() && !m.never_extended;
        });
    if (only_value_mismatch && b.alg != HashAlg::kSha1) {
      retry.push_back(b.alg);
    } else {
      report.mismatches.insert(report.mismatches.end(), mism.begin(), mism.end());
    }
  }
  if (!retry.empty()) {
    CTRUST_ASSIGN_OR_RETURN(PassResult second, replay_pass(open, retry, retry, {}, source_name));
    for (std::size_t i = 0; i < retry.size(); ++i) {
      const PcrBank& padded_bank = second.banks[i];
      if (compare(padded_bank, expected.at(retry[i]), accounted).empty()) {
        report.sha1_padded_banks.push_back(retry[i]);
        for (PcrBank& b : report.replayed) {
          if (b.alg == retry[i]) b = padded_bank;
        }
      } else {
        const PcrBank* native = nullptr;
        for (const PcrBank& b : first.banks) {
          if (b.alg == retry[i]) native = &b;
        }
        auto mism = compare(*native, expected.at(retry[i]), accounted);
        report.mismatches.insert(report.mismatches.end(), mism.begin(), mism.end());
      }
    }
  }
  return report;
}

}  // namespace ctrust::imalog
