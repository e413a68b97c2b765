// PCR selections and PCR values, independent of any TPM connection.
//
// A PcrSelection lists banks (hash algorithms) in order, each with its PCR indices in
// ascending order; that order is the TPM's order for PCR_Read and for a quote's PCR
// digest. The text form is tpm2-tools' "sha256:10,16+sha1:0" (also "sha256:all").
// The PCR file is tpm2-tools' default "serialized" form of tpm2_quote --pcr and
// tpm2_checkquote --pcr: the host-endian (little-endian here) C structs
// TPML_PCR_SELECTION, UINT32 count, count x TPML_DIGEST (8 digests each), so that our
// files and theirs are interchangeable.
//
// Everything here parses untrusted bytes defensively and is safe to share between threads.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/digest.h"
#include "util/hex.h"
#include "util/result.h"

namespace ctrust::tpm {

inline constexpr unsigned kPcrCount = 24;

TPM2_ALG_ID tpm_alg(crypto::HashAlg alg);
Result<crypto::HashAlg> hash_alg_from_tpm(TPM2_ALG_ID alg);

struct PcrBank {
  crypto::HashAlg alg = crypto::HashAlg::kSha256;
  std::vector<unsigned> pcrs;  // ascending, unique, < kPcrCount
  bool operator==(const PcrBank&) const = default;
};
using PcrSelection = std::vector<PcrBank>;

// "sha256:10,16+sha1:0", "sha256:all", "sha256:0-7" (ranges too). Banks must be distinct.
Result<PcrSelection> parse_pcr_list(std::string_view text);
std::string format_pcr_list(const PcrSelection& selection);
std::size_t pcr_count(const PcrSelection& selection);

TPML_PCR_SELECTION to_tpml(const PcrSelection& selection);
// Rejects unknown hash algorithms and PCR bits beyond kPcrCount.
Result<PcrSelection> from_tpml(const TPML_PCR_SELECTION& selection);

struct PcrValues {
  PcrSelection selection;
  std::vector<crypto::Digest> values;  // one per selected PCR, in selection order
  bool operator==(const PcrValues&) const = default;
};

// Hash of the concatenated values: the pcrDigest a TPM puts into a quote.
Result<crypto::Digest> pcr_digest(crypto::HashAlg alg, const PcrValues& values);

Bytes encode_pcr_file(const PcrValues& values);
Result<PcrValues> decode_pcr_file(ByteView bytes);

}  // namespace ctrust::tpm
