// Replaying a measurement list into PCR values, and verifying a log against PCR values.
//
// Replayer extends each entry into every requested bank the way the kernel does: the
// bank's hash over the template data, or all 0xFF for a violation record. It also checks
// each entry's logged template digest against the data (the re-check that catches a
// tampered record whose PCR effect was hidden). verify_log() runs a whole log against
// expected PCR values and explains every failure with a bank, a PCR and an entry number.
//
// Thread safety: a Replayer is single-threaded.
#pragma once

#include <array>
#include <map>
#include <vector>

#include "imalog/source.h"

namespace ctrust::imalog {

inline constexpr std::size_t kNumPcrs = kMaxPcrIndex + 1;

struct PcrBank {
  HashAlg alg = HashAlg::kSha256;
  std::array<Digest, kNumPcrs> values{};
  std::uint32_t extended = 0;  // bit i: PCR i was extended by the log
};

enum class EntryStatus : std::uint8_t {
  kOk,
  kViolation,          // all-zero template digest: extended with 0xFF
  kBadTemplateDigest,  // the logged template digest does not match the data
};

class Replayer {
 public:
  // `sha1_padded` lists banks that are extended with the SHA-1 template digest
  // zero-padded to the bank's size, as kernels do for a bank whose hash they lack.
  explicit Replayer(const std::vector<HashAlg>& banks,
                    const std::vector<HashAlg>& sha1_padded = {});

  // Extends `entry` into every bank. Malformed entries are Errors.
  Result<EntryStatus> add(const Entry& entry);

  const std::vector<PcrBank>& banks() const { return banks_; }
  const PcrBank* bank(HashAlg alg) const;

 private:
  std::vector<PcrBank> banks_;
  std::vector<bool> padded_;
  Bytes scratch_;
};

// Expected PCR values per bank, as read from PCR files.
using ExpectedPcrs = std::map<HashAlg, std::map<std::uint32_t, Digest>>;

// Parses a PCR file: `PCR-NN: HEX` lines (evmctl's --pcrs format, as `ctrust log replay`
// prints) or tpm2_pcrread output (`sha256:` then `  N : 0xHEX`). `bank` names the bank
// of PCR-NN lines; if unset it is inferred from the digest length.
Result<ExpectedPcrs> parse_pcr_file(std::string_view text, std::optional<HashAlg> bank);

// Prints one bank as 24 `PCR-NN: HEX` lines, the form evmctl reads.
std::string format_pcr_lines(const PcrBank& bank);

struct PcrMismatch {
  HashAlg bank;
  std::uint32_t pcr;
  Digest replayed;
  std::optional<Digest> expected;  // nullopt: the PCR file does not give this PCR
  // The log never extends this PCR (replayed is all zeros), but it is one the log must
  // account for and the PCR file gives it a value that is not all zeros: entries were
  // removed, or the log is not this PCR's.
  bool never_extended = false;
};

struct VerifyReport {
  std::uint64_t entries = 0;
  std::uint64_t violations = 0;
  std::vector<std::uint64_t> violation_entries;  // 1-based, the first kMaxListed
  std::uint64_t bad_template_digests = 0;
  std::vector<std::uint64_t> bad_template_entries;  // 1-based, the first kMaxListed
  std::vector<PcrMismatch> mismatches;
  std::vector<HashAlg> sha1_padded_banks;  // banks that matched only in the padded variant
  std::vector<PcrBank> replayed;

  static constexpr std::size_t kMaxListed = 100;
  bool ok() const { return mismatches.empty() && bad_template_digests == 0; }
};

// Replays the log from `open()` against `expected` (every bank it names). A bank that does
// not match is replayed a second time in the SHA-1-padded variant and reported if that
// matches. `open` is called once per pass. Errors while reading are prefixed with
// `source_name` (a file name) so they say where they happened. `accounted` (a bit per PCR,
// default PCR 10, IMA's) names the PCRs the log is the record of: one that the PCR files
// give but the log never extends must be all zeros (an empty or emptied log against an
// extended PCR fails, as evmctl ima_measurement does); other PCRs the log does not extend
// (the boot PCRs of a tpm2_pcrread file) are not its business.
using SourceFactory = std::function<Result<std::unique_ptr<EntrySource>>()>;
inline constexpr std::uint32_t kImaPcrMask = 1u << 10;
Result<VerifyReport> verify_log(const SourceFactory& open, const ExpectedPcrs& expected,
                                const std::function<void(std::uint64_t)>& progress = {},
                                const std::string& source_name = {},
                                std::uint32_t accounted = kImaPcrMask);

}  // namespace ctrust::imalog
