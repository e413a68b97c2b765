// A connection to one TPM 2.0 (hardware, swtpm or simulator) through tpm2-tss ESAPI.
//
// Tpm::open() takes a TCTI string as tpm2-tools does ("device:/dev/tpmrm0",
// "swtpm:path=/run/x.sock", "mssim:host=localhost,port=2321"). Every TSS failure becomes
// an Error with code kTpm, the TSS2_RC as native() and Tss2_RC_Decode's text.
//
// Ownership: a Tpm owns its ESYS and TCTI contexts. A TpmKey owns its transient object
// (flushed when the TpmKey dies) and must not outlive the Tpm that made it; keys at
// persistent handles are only referenced. Every transient object and session ctrust
// creates is flushed, also on error paths.
//
// Thread safety: a Tpm is one conversation with the TPM; use it from one thread at a time
// (the agent gives each vTPM its own Tpm).
#pragma once

#include <tss2/tss2_esys.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tpm/attest.h"
#include "tpm/credential.h"
#include "tpm/pcr.h"
#include "tpm/public.h"
#include "util/result.h"
#include "util/unique_handle.h"

struct TSS2_TCTI_OPAQUE_CONTEXT_BLOB;

namespace ctrust::tpm {

// An Error from a TSS2_RC, with the decoded text.
Error tss_error(const std::string& what, TSS2_RC rc);

// The default persistent handle for ctrust's attestation key (TCG's "AK" range).
inline constexpr TPM2_HANDLE kDefaultAkHandle = 0x81010002;

struct TransientObject {
  ESYS_CONTEXT* ctx = nullptr;
  ESYS_TR handle = ESYS_TR_NONE;
  bool operator==(const TransientObject&) const = default;
};
struct TransientTraits {
  using Value = TransientObject;
  static constexpr TransientObject invalid() { return {}; }
  static void release(TransientObject object);
};
using UniqueTransient = UniqueHandle<TransientTraits>;

class TpmKey {
 public:
  TpmKey() = default;
  ESYS_TR handle() const { return owned_.valid() ? owned_.get().handle : handle_; }
  const TpmPublic& public_area() const { return public_; }
  const Bytes& name() const { return name_; }
  // The persistent handle, or 0 for a transient object.
  TPM2_HANDLE persistent_handle() const { return persistent_; }

 private:
  friend class Tpm;
  UniqueTransient owned_;
  ESYS_TR handle_ = ESYS_TR_NONE;
  TPM2_HANDLE persistent_ = 0;
  TpmPublic public_;
  Bytes name_;
};

struct TpmInfo {
  std::string manufacturer;  // e.g. "IBM"
  std::string vendor;        // vendor strings 1-4 joined
  std::uint64_t firmware_version = 0;
  std::string family;          // "2.0"
  std::uint32_t revision = 0;  // spec revision * 100
  std::vector<crypto::HashAlg> active_banks;
};

struct Quote {
  Bytes message;    // marshalled TPMS_ATTEST
  Bytes signature;  // marshalled TPMT_SIGNATURE
  PcrValues pcrs;   // the values quoted, read consistently with the quote
};

struct Certification {
  Bytes message;
  Bytes signature;
};

class Tpm {
 public:
  static Result<Tpm> open(const std::string& tcti);
  ~Tpm();
  Tpm(Tpm&& other) noexcept;
  Tpm& operator=(Tpm&& other) noexcept;
  Tpm(const Tpm&) = delete;
  Tpm& operator=(const Tpm&) = delete;

  const std::string& tcti() const { return tcti_; }

  Result<TpmInfo> info();
  Result<std::vector<crypto::HashAlg>> active_banks();
  Result<PcrValues> pcr_read(const PcrSelection& selection);
  // Extends `pcr` in every active bank with that bank's hash of `data`; returns the
  // digests extended (one per active bank).
  Result<std::vector<crypto::Digest>> pcr_extend_data(unsigned pcr, ByteView data);
  // Extends `pcr` with the given digests (one per bank; each bank at most once).
  Result<void> pcr_extend(unsigned pcr, const std::vector<crypto::Digest>& digests);

  // The TCG default EK of that type as a transient primary key.
  Result<TpmKey> endorsement_key(KeyAlg alg);
  // The EK certificate (DER) from NV, or nullopt when the index is not defined.
  Result<std::optional<Bytes>> ek_certificate(KeyAlg alg);

  // The attestation key at `handle`: loaded when one is there (and is a restricted signing
  // key of that algorithm; anything else is an error, never overwritten), else created as a
  // primary key in the endorsement hierarchy and made persistent at `handle`.
  Result<TpmKey> attestation_key(KeyAlg alg, TPM2_HANDLE handle = kDefaultAkHandle);
  // A transient attestation key (not persisted), e.g. for tests and one-shot use.
  Result<TpmKey> create_transient_ak(KeyAlg alg);
  // Removes the persistent object at `handle` (no error when there is none).
  Result<void> evict(TPM2_HANDLE handle);

  // Quotes `selection` with `ak`; reads the PCR values and retries when an extend races
  // with the quote so that `pcrs` always matches the quote's digest.
  Result<Quote> quote(const TpmKey& ak, const PcrSelection& selection, ByteView nonce);
  // TPM2_Certify: `signer` signs that `object` is loaded in this TPM.
  Result<Certification> certify(const TpmKey& object, const TpmKey& signer, ByteView nonce);
  // TPM2_ActivateCredential with `object` (e.g. the AK) and `ek`; returns the secret.
  Result<Bytes> activate_credential(const TpmKey& object, const TpmKey& ek,
                                    const Credential& credential);

  // Random bytes from the TPM.
  Result<Bytes> random(std::size_t size);

  // TPM2_Shutdown(STATE): the TPM saves its PCRs so that a restart with
  // TPM2_Startup(STATE) resumes them. Send it before stopping a vTPM that should come back.
  Result<void> shutdown_state();
  // How many transient objects and sessions are loaded (leak checks).
  Result<std::size_t> loaded_handle_count();

 private:
  struct Contexts;
  explicit Tpm(std::string tcti, std::unique_ptr<Contexts> contexts);
  ESYS_CONTEXT* esys() const;
  Result<TpmKey> create_primary(ESYS_TR hierarchy, const TPM2B_PUBLIC& templ);
  Result<UniqueTransient> endorsement_policy_session();

  std::string tcti_;
  std::unique_ptr<Contexts> contexts_;
};

}  // namespace ctrust::tpm
