#include "tpm/tpm.h"

#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace ctrust::tpm {
namespace {

template <typename T>
void esys_free(T* p) {
  Esys_Free(p);
}
// Owner of an output structure ESAPI allocated.
template <typename T>
class EsysOut : public UniquePtr<T, esys_free<T>> {
 public:
  using UniquePtr<T, esys_free<T>>::UniquePtr;
  T* operator->() const { return this->get(); }
  T& operator*() const { return *this->get(); }
};

constexpr int kQuoteAttempts = 5;
// Larger NV reads than this are split; every TPM supports at least 512 (TCG PC Client).
constexpr std::uint16_t kNvChunk = 512;
constexpr std::size_t kRandomChunk = 32;

// TPM format-one errors carry the parameter/handle number in bits 6 and 8-11; compare
// the error number alone.
bool is_tpm_error(TSS2_RC rc, TSS2_RC error) {
  TSS2_RC base = rc & 0xffff;
  if (base & TPM2_RC_FMT1) return (base & 0xbf) == error;
  return base == error;
}

bool is_missing_handle(TSS2_RC rc) {
  return is_tpm_error(rc, TPM2_RC_HANDLE) || is_tpm_error(rc, TPM2_RC_REFERENCE_H0) ||
         is_tpm_error(rc, TPM2_RC_VALUE);
}

std::string chars_of(std::uint32_t value) {
  std::string out;
  for (int shift = 24; shift >= 0; shift -= 8) {
    char c = static_cast<char>((value >> shift) & 0xff);
    if (c >= 0x20 && c < 0x7f) out += c;
  }
  return out;
}

template <typename T>
void copy_to_tpm2b(T& out, ByteView data) {
  out.size = static_cast<UINT16>(data.size());
  std::memcpy(out.buffer, data.data(), data.size());
}

// The length of a DER SEQUENCE from its header, so that NV padding after a certificate is
// dropped; 0 when the header is not a well-formed definite-length SEQUENCE.
std::size_t der_length(ByteView der) {
  if (der.size() < 2 || der[0] != 0x30) return 0;
  if (der[1] < 0x80) return 2 + der[1];
  std::size_t n = der[1] & 0x7f;
  if (n == 0 || n > 3 || der.size() < 2 + n) return 0;
  std::size_t len = 0;
  for (std::size_t i = 0; i < n; ++i) len = (len << 8) | der[2 + i];
  return 2 + n + len;
}

// The bytes of a TPM2B_ATTEST and a TPMT_SIGNATURE as the TPM returned them.
Result<Certification> signed_attestation(const TPM2B_ATTEST& attest, const TPMT_SIGNATURE& sig) {
  Certification out;
  out.message.assign(attest.attestationData, attest.attestationData + attest.size);
  out.signature.resize(sizeof(TPMT_SIGNATURE));
  std::size_t offset = 0;
  TSS2_RC rc =
      Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, out.signature.data(), out.signature.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return tss_error("marshalling a signature", rc);
  out.signature.resize(offset);
  return out;
}

}  // namespace

Error tss_error(const std::string& what, TSS2_RC rc) {
  char code[16];
  std::snprintf(code, sizeof(code), "0x%x", rc);
  return Error(Errc::kTpm, what + ": " + Tss2_RC_Decode(rc) + " (" + code + ")", rc);
}

void TransientTraits::release(TransientObject object) {
  if (object.ctx != nullptr && object.handle != ESYS_TR_NONE) {
    Esys_FlushContext(object.ctx, object.handle);
  }
}

struct Tpm::Contexts {
  TSS2_TCTI_CONTEXT* tcti = nullptr;
  ESYS_CONTEXT* esys = nullptr;
  std::vector<crypto::HashAlg> banks;  // cached: allocation changes only across reboots
  ~Contexts() {
    if (esys != nullptr) Esys_Finalize(&esys);
    if (tcti != nullptr) Tss2_TctiLdr_Finalize(&tcti);
  }
};

Tpm::Tpm(std::string tcti, std::unique_ptr<Contexts> contexts)
    : tcti_(std::move(tcti)), contexts_(std::move(contexts)) {}
Tpm::~Tpm() = default;
Tpm::Tpm(Tpm&& other) noexcept = default;
Tpm& Tpm::operator=(Tpm&& other) noexcept = default;

ESYS_CONTEXT* Tpm::esys() const { return contexts_->esys; }

Result<Tpm> Tpm::open(const std::string& tcti) {
  auto contexts = std::make_unique<Contexts>();
  TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti.c_str(), &contexts->tcti);
  if (rc != TSS2_RC_SUCCESS) {
    return tss_error(
        "cannot open the TPM at TCTI '" + tcti + "' (is the device present, or the swtpm running?)",
        rc);
  }
  rc = Esys_Initialize(&contexts->esys, contexts->tcti, nullptr);
  if (rc != TSS2_RC_SUCCESS) return tss_error("cannot start ESAPI on '" + tcti + "'", rc);
  return Tpm(tcti, std::move(contexts));
}

Result<TpmInfo> Tpm::info() {
  TPMI_YES_NO more = TPM2_NO;
  TPMS_CAPABILITY_DATA* raw = nullptr;
  TSS2_RC rc =
      Esys_GetCapability(esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                         TPM2_PT_FIXED, TPM2_MAX_TPM_PROPERTIES, &more, &raw);
  EsysOut<TPMS_CAPABILITY_DATA> data(raw);
  if (rc != TSS2_RC_SUCCESS) return tss_error("reading TPM properties", rc);
  TpmInfo info;
  std::uint32_t fw1 = 0;
  std::uint32_t fw2 = 0;
  std::string vendor[4];
  const TPML_TAGGED_TPM_PROPERTY& props = data->data.tpmProperties;
  for (std::uint32_t i = 0; i < props.count && i < TPM2_MAX_TPM_PROPERTIES; ++i) {
    const TPMS_TAGGED_PROPERTY& p = props.tpmProperty[i];
    switch (p.property) {
      case TPM2_PT_FAMILY_INDICATOR:
        info.family = chars_of(p.value);
        break;
      case TPM2_PT_REVISION:
        info.revision = p.value;
        break;
      case TPM2_PT_MANUFACTURER:
        info.manufacturer = chars_of(p.value);
        break;
      case TPM2_PT_VENDOR_STRING_1:
      case TPM2_PT_VENDOR_STRING_2:
      case TPM2_PT_VENDOR_STRING_3:
      case TPM2_PT_VENDOR_STRING_4:
        vendor[p.property - TPM2_PT_VENDOR_STRING_1] = chars_of(p.value);
        break;
      case TPM2_PT_FIRMWARE_VERSION_1:
        fw1 = p.value;
        break;
      case TPM2_PT_FIRMWARE_VERSION_2:
        fw2 = p.value;
        break;
      default:
        break;
    }
  }
  for (const auto& v : vendor) info.vendor += v;
  info.firmware_version = (std::uint64_t{fw1} << 32) | fw2;
  CTRUST_ASSIGN_OR_RETURN(info.active_banks, active_banks());
  return info;
}

Result<std::vector<crypto::HashAlg>> Tpm::active_banks() {
  if (!contexts_->banks.empty()) return contexts_->banks;
  TPMI_YES_NO more = TPM2_NO;
  TPMS_CAPABILITY_DATA* raw = nullptr;
  TSS2_RC rc = Esys_GetCapability(esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_PCRS,
                                  0, 1, &more, &raw);
  EsysOut<TPMS_CAPABILITY_DATA> data(raw);
  if (rc != TSS2_RC_SUCCESS) return tss_error("reading the PCR banks", rc);
  const TPML_PCR_SELECTION& assigned = data->data.assignedPCR;
  std::vector<crypto::HashAlg> banks;
  for (std::uint32_t i = 0; i < assigned.count && i < TPM2_NUM_PCR_BANKS; ++i) {
    const TPMS_PCR_SELECTION& s = assigned.pcrSelections[i];
    bool any = false;
    for (unsigned b = 0; b < s.sizeofSelect && b < sizeof(s.pcrSelect); ++b) {
      any = any || s.pcrSelect[b] != 0;
    }
    auto alg = hash_alg_from_tpm(s.hash);
    if (any && alg) banks.push_back(*alg);  // banks we cannot hash are left alone
  }
  if (banks.empty()) return Error(Errc::kTpm, "the TPM has no active PCR bank we support");
  contexts_->banks = banks;
  return banks;
}

Result<PcrValues> Tpm::pcr_read(const PcrSelection& selection) {
  PcrValues out;
  out.selection = selection;
  for (const auto& bank : selection) {
    std::vector<unsigned> remaining = bank.pcrs;
    while (!remaining.empty()) {
      TPML_PCR_SELECTION in = to_tpml({PcrBank{bank.alg, remaining}});
      UINT32 counter = 0;
      TPML_PCR_SELECTION* raw_sel = nullptr;
      TPML_DIGEST* raw_values = nullptr;
      TSS2_RC rc = Esys_PCR_Read(esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &in, &counter,
                                 &raw_sel, &raw_values);
      EsysOut<TPML_PCR_SELECTION> got_sel(raw_sel);
      EsysOut<TPML_DIGEST> values(raw_values);
      if (rc != TSS2_RC_SUCCESS) return tss_error("reading PCRs", rc);
      CTRUST_ASSIGN_OR_RETURN(PcrSelection got, from_tpml(*got_sel));
      if (got.empty() || got[0].pcrs.empty()) {
        return Error(Errc::kTpm, "the TPM's " + std::string(crypto::hash_name(bank.alg)) +
                                     " PCR bank is not active");
      }
      if (got[0].pcrs.size() != values->count) {
        return Error(Errc::kTpm, "the TPM returned a PCR count that does not match its selection");
      }
      // The TPM reads a prefix of what was asked for, in ascending order.
      for (std::uint32_t i = 0; i < values->count; ++i) {
        CTRUST_ASSIGN_OR_RETURN(crypto::Digest d, crypto::Digest::from_bytes(
                                                      bank.alg, ByteView(values->digests[i].buffer,
                                                                         values->digests[i].size)));
        out.values.push_back(d);
      }
      std::erase_if(remaining, [&](unsigned pcr) {
        return std::find(got[0].pcrs.begin(), got[0].pcrs.end(), pcr) != got[0].pcrs.end();
      });
    }
  }
  return out;
}

Result<void> Tpm::pcr_extend(unsigned pcr, const std::vector<crypto::Digest>& digests) {
  if (pcr >= kPcrCount) return Error(Errc::kInvalidArgument, "PCR index beyond 23");
  if (digests.empty() || digests.size() > TPM2_NUM_PCR_BANKS) {
    return Error(Errc::kInvalidArgument, "extend needs one digest per bank");
  }
  TPML_DIGEST_VALUES values{};
  for (const auto& d : digests) {
    for (std::uint32_t i = 0; i < values.count; ++i) {
      if (values.digests[i].hashAlg == tpm_alg(d.alg)) {
        return Error(Errc::kInvalidArgument, "extend lists a bank twice");
      }
    }
    TPMT_HA& ha = values.digests[values.count++];
    ha.hashAlg = tpm_alg(d.alg);
    std::memcpy(&ha.digest, d.bytes.data(), d.size());
  }
  TSS2_RC rc = Esys_PCR_Extend(esys(), ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                               ESYS_TR_NONE, &values);
  if (rc != TSS2_RC_SUCCESS) return tss_error("extending PCR " + std::to_string(pcr), rc);
  return ok_result();
}

Result<std::vector<crypto::Digest>> Tpm::pcr_extend_data(unsigned pcr, ByteView data) {
  CTRUST_ASSIGN_OR_RETURN(auto banks, active_banks());
  std::vector<crypto::Digest> digests;
  for (auto alg : banks) {
    CTRUST_ASSIGN_OR_RETURN(crypto::Digest d, crypto::digest_bytes(alg, data));
    digests.push_back(d);
  }
  CTRUST_TRY(pcr_extend(pcr, digests));
  return digests;
}

Result<TpmKey> Tpm::create_primary(ESYS_TR hierarchy, const TPM2B_PUBLIC& templ) {
  TPM2B_SENSITIVE_CREATE sensitive{};
  TPM2B_DATA outside{};
  TPML_PCR_SELECTION creation_pcr{};
  ESYS_TR handle = ESYS_TR_NONE;
  TPM2B_PUBLIC* raw_public = nullptr;
  TPM2B_CREATION_DATA* raw_creation = nullptr;
  TPM2B_DIGEST* raw_hash = nullptr;
  TPMT_TK_CREATION* raw_ticket = nullptr;
  TSS2_RC rc = Esys_CreatePrimary(esys(), hierarchy, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                  &sensitive, &templ, &outside, &creation_pcr, &handle, &raw_public,
                                  &raw_creation, &raw_hash, &raw_ticket);
  EsysOut<TPM2B_PUBLIC> out_public(raw_public);
  EsysOut<TPM2B_CREATION_DATA> creation(raw_creation);
  EsysOut<TPM2B_DIGEST> creation_hash(raw_hash);
  EsysOut<TPMT_TK_CREATION> ticket(raw_ticket);
  if (rc != TSS2_RC_SUCCESS) return tss_error("creating a primary key", rc);
  TpmKey key;
  key.owned_ = UniqueTransient({esys(), handle});
  key.public_ = TpmPublic(out_public->publicArea);
  CTRUST_ASSIGN_OR_RETURN(key.name_, key.public_.name());
  return key;
}

Result<TpmKey> Tpm::endorsement_key(KeyAlg alg) {
  auto key = create_primary(ESYS_TR_RH_ENDORSEMENT, ek_template(alg));
  if (!key) return std::move(key).error().with_context("creating the EK");
  return key;
}

Result<std::optional<Bytes>> Tpm::ek_certificate(KeyAlg alg) {
  TPM2_HANDLE index = ek_certificate_nv_index(alg);
  ESYS_TR nv = ESYS_TR_NONE;
  TSS2_RC rc = Esys_TR_FromTPMPublic(esys(), index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
  if (rc != TSS2_RC_SUCCESS) {
    if (is_missing_handle(rc)) return std::optional<Bytes>();
    return tss_error("looking up the EK certificate NV index", rc);
  }
  struct Closer {
    ESYS_CONTEXT* ctx;
    ESYS_TR tr;
    ~Closer() { Esys_TR_Close(ctx, &tr); }
  } closer{esys(), nv};
  TPM2B_NV_PUBLIC* raw_public = nullptr;
  TPM2B_NAME* raw_name = nullptr;
  rc = Esys_NV_ReadPublic(esys(), nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw_public,
                          &raw_name);
  EsysOut<TPM2B_NV_PUBLIC> nv_public(raw_public);
  EsysOut<TPM2B_NAME> nv_name(raw_name);
  if (rc != TSS2_RC_SUCCESS) return tss_error("reading the EK certificate NV index", rc);
  std::uint16_t size = nv_public->nvPublic.dataSize;
  Bytes cert;
  for (std::uint16_t offset = 0; offset < size;) {
    auto chunk = static_cast<std::uint16_t>(std::min<int>(kNvChunk, size - offset));
    TPM2B_MAX_NV_BUFFER* raw_data = nullptr;
    rc = Esys_NV_Read(esys(), nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, chunk, offset,
                      &raw_data);
    EsysOut<TPM2B_MAX_NV_BUFFER> data(raw_data);
    if (rc != TSS2_RC_SUCCESS) return tss_error("reading the EK certificate", rc);
    cert.insert(cert.end(), data->buffer, data->buffer + data->size);
    offset = static_cast<std::uint16_t>(offset + chunk);
  }
  std::size_t der = der_length(cert);
  if (der == 0 || der > cert.size()) {
    return Error(Errc::kFormat, "EK certificate NV index does not hold a DER certificate");
  }
  cert.resize(der);
  return std::optional<Bytes>(std::move(cert));
}

Result<TpmKey> Tpm::create_transient_ak(KeyAlg alg) {
  auto key = create_primary(ESYS_TR_RH_ENDORSEMENT, ak_template(alg));
  if (!key) return std::move(key).error().with_context("creating the attestation key");
  return key;
}

Result<TpmKey> Tpm::attestation_key(KeyAlg alg, TPM2_HANDLE handle) {
  if (handle < 0x81000000 || handle > 0x81ffffff) {
    return Error(Errc::kInvalidArgument, "attestation key handle must be persistent (0x81...)");
  }
  ESYS_TR tr = ESYS_TR_NONE;
  TSS2_RC rc = Esys_TR_FromTPMPublic(esys(), handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
  char hex_handle[16];
  std::snprintf(hex_handle, sizeof(hex_handle), "0x%x", handle);
  if (rc == TSS2_RC_SUCCESS) {
    TPM2B_PUBLIC* raw_public = nullptr;
    TPM2B_NAME* raw_name = nullptr;
    TPM2B_NAME* raw_qname = nullptr;
    rc = Esys_ReadPublic(esys(), tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &raw_public,
                         &raw_name, &raw_qname);
    EsysOut<TPM2B_PUBLIC> out_public(raw_public);
    EsysOut<TPM2B_NAME> name(raw_name);
    EsysOut<TPM2B_NAME> qname(raw_qname);
    if (rc != TSS2_RC_SUCCESS)
      return tss_error("reading the key at " + std::string(hex_handle), rc);
    TpmKey key;
    key.handle_ = tr;
    key.persistent_ = handle;
    key.public_ = TpmPublic(out_public->publicArea);
    CTRUST_ASSIGN_OR_RETURN(key.name_, key.public_.name());
    TPM2_ALG_ID want = alg == KeyAlg::kRsa2048 ? TPM2_ALG_RSA : TPM2_ALG_ECC;
    if (!key.public_.is_restricted_signing() || key.public_.area().type != want) {
      return Error(Errc::kInvalidArgument, "the persistent object at " + std::string(hex_handle) +
                                               " is not a restricted " +
                                               std::string(key_alg_name(alg)) +
                                               " signing key; choose another handle or evict it");
    }
    return key;
  }
  if (!is_missing_handle(rc)) {
    return tss_error("looking up the attestation key at " + std::string(hex_handle), rc);
  }
  CTRUST_ASSIGN_OR_RETURN(TpmKey transient, create_transient_ak(alg));
  ESYS_TR persistent = ESYS_TR_NONE;
  rc = Esys_EvictControl(esys(), ESYS_TR_RH_OWNER, transient.handle(), ESYS_TR_PASSWORD,
                         ESYS_TR_NONE, ESYS_TR_NONE, handle, &persistent);
  if (rc != TSS2_RC_SUCCESS) {
    return tss_error("making the attestation key persistent at " + std::string(hex_handle), rc);
  }
  TpmKey key;
  key.handle_ = persistent;
  key.persistent_ = handle;
  key.public_ = transient.public_;
  key.name_ = transient.name_;
  return key;  // `transient` is flushed here; the persistent copy stays
}

Result<void> Tpm::evict(TPM2_HANDLE handle) {
  ESYS_TR tr = ESYS_TR_NONE;
  TSS2_RC rc = Esys_TR_FromTPMPublic(esys(), handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
  if (rc != TSS2_RC_SUCCESS) {
    if (is_missing_handle(rc)) return ok_result();
    return tss_error("looking up a persistent object", rc);
  }
  ESYS_TR out = ESYS_TR_NONE;
  rc = Esys_EvictControl(esys(), ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                         handle, &out);
  if (rc != TSS2_RC_SUCCESS) {
    Esys_TR_Close(esys(), &tr);
    return tss_error("evicting a persistent object", rc);
  }
  return ok_result();
}

Result<UniqueTransient> Tpm::endorsement_policy_session() {
  TPMT_SYM_DEF symmetric{};
  symmetric.algorithm = TPM2_ALG_NULL;
  ESYS_TR session = ESYS_TR_NONE;
  TSS2_RC rc = Esys_StartAuthSession(esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                     ESYS_TR_NONE, nullptr, TPM2_SE_POLICY, &symmetric,
                                     TPM2_ALG_SHA256, &session);
  if (rc != TSS2_RC_SUCCESS) return tss_error("starting a policy session", rc);
  UniqueTransient owned({esys(), session});
  TPM2B_TIMEOUT* raw_timeout = nullptr;
  TPMT_TK_AUTH* raw_ticket = nullptr;
  rc = Esys_PolicySecret(esys(), ESYS_TR_RH_ENDORSEMENT, session, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                         ESYS_TR_NONE, nullptr, nullptr, nullptr, 0, &raw_timeout, &raw_ticket);
  EsysOut<TPM2B_TIMEOUT> timeout(raw_timeout);
  EsysOut<TPMT_TK_AUTH> ticket(raw_ticket);
  if (rc != TSS2_RC_SUCCESS) return tss_error("authorising the endorsement hierarchy", rc);
  // The TPM flushes the session after the command it authorises.
  rc = Esys_TRSess_SetAttributes(esys(), session, 0, TPMA_SESSION_CONTINUESESSION);
  if (rc != TSS2_RC_SUCCESS) return tss_error("setting session attributes", rc);
  return owned;
}

Result<Quote> Tpm::quote(const TpmKey& ak, const PcrSelection& selection, ByteView nonce) {
  TPM2B_DATA qualifying{};
  if (nonce.size() > sizeof(qualifying.buffer)) {
    return Error(Errc::kInvalidArgument, "qualifying data longer than " +
                                             std::to_string(sizeof(qualifying.buffer)) + " bytes");
  }
  if (selection.empty()) return Error(Errc::kInvalidArgument, "empty PCR selection");
  copy_to_tpm2b(qualifying, nonce);
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_NULL;  // the key's own scheme
  TPML_PCR_SELECTION tpml = to_tpml(selection);
  for (int attempt = 0; attempt < kQuoteAttempts; ++attempt) {
    CTRUST_ASSIGN_OR_RETURN(PcrValues pcrs, pcr_read(selection));
    TPM2B_ATTEST* raw_attest = nullptr;
    TPMT_SIGNATURE* raw_sig = nullptr;
    TSS2_RC rc = Esys_Quote(esys(), ak.handle(), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                            &qualifying, &scheme, &tpml, &raw_attest, &raw_sig);
    EsysOut<TPM2B_ATTEST> attest(raw_attest);
    EsysOut<TPMT_SIGNATURE> sig(raw_sig);
    if (rc != TSS2_RC_SUCCESS) return tss_error("quoting PCRs", rc);
    CTRUST_ASSIGN_OR_RETURN(Certification signed_quote, signed_attestation(*attest, *sig));
    Quote quote;
    quote.message = std::move(signed_quote.message);
    quote.signature = std::move(signed_quote.signature);
    CTRUST_ASSIGN_OR_RETURN(Attestation parsed, parse_attestation(quote.message));
    CTRUST_ASSIGN_OR_RETURN(TpmSignature parsed_sig, parse_signature(quote.signature));
    CTRUST_ASSIGN_OR_RETURN(crypto::Digest expected, pcr_digest(parsed_sig.hash, pcrs));
    if (std::equal(parsed.pcr_digest.begin(), parsed.pcr_digest.end(), expected.view().begin(),
                   expected.view().end())) {
      quote.pcrs = std::move(pcrs);
      return quote;
    }
    // A PCR was extended between the read and the quote; try again.
  }
  return Error(Errc::kTpm, "PCRs kept changing while quoting; try again");
}

Result<Certification> Tpm::certify(const TpmKey& object, const TpmKey& signer, ByteView nonce) {
  TPM2B_DATA qualifying{};
  if (nonce.size() > sizeof(qualifying.buffer)) {
    return Error(Errc::kInvalidArgument, "qualifying data too long");
  }
  copy_to_tpm2b(qualifying, nonce);
  TPMT_SIG_SCHEME scheme{};
  scheme.scheme = TPM2_ALG_NULL;
  // An EK-like object (adminWithPolicy) is authorised with PolicySecret(endorsement).
  UniqueTransient policy;
  ESYS_TR object_auth = ESYS_TR_PASSWORD;
  if (object.public_area().area().objectAttributes & TPMA_OBJECT_ADMINWITHPOLICY) {
    CTRUST_ASSIGN_OR_RETURN(policy, endorsement_policy_session());
    object_auth = policy.get().handle;
  }
  TPM2B_ATTEST* raw_attest = nullptr;
  TPMT_SIGNATURE* raw_sig = nullptr;
  TSS2_RC rc = Esys_Certify(esys(), object.handle(), signer.handle(), object_auth, ESYS_TR_PASSWORD,
                            ESYS_TR_NONE, &qualifying, &scheme, &raw_attest, &raw_sig);
  EsysOut<TPM2B_ATTEST> attest(raw_attest);
  EsysOut<TPMT_SIGNATURE> sig(raw_sig);
  if (rc != TSS2_RC_SUCCESS) return tss_error("certifying a key", rc);
  if (policy) (void)policy.release();  // flushed by the TPM with the command
  return signed_attestation(*attest, *sig);
}

Result<Bytes> Tpm::activate_credential(const TpmKey& object, const TpmKey& ek,
                                       const Credential& credential) {
  TPM2B_ID_OBJECT blob{};
  std::size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(credential.credential_blob.data(),
                                                 credential.credential_blob.size(), &offset, &blob);
  if (rc != TSS2_RC_SUCCESS || offset != credential.credential_blob.size()) {
    return Error(Errc::kFormat, "malformed credential blob (TPM2B_ID_OBJECT)", rc);
  }
  TPM2B_ENCRYPTED_SECRET secret{};
  offset = 0;
  rc = Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(credential.secret.data(), credential.secret.size(),
                                                &offset, &secret);
  if (rc != TSS2_RC_SUCCESS || offset != credential.secret.size()) {
    return Error(Errc::kFormat, "malformed credential secret (TPM2B_ENCRYPTED_SECRET)", rc);
  }
  CTRUST_ASSIGN_OR_RETURN(UniqueTransient policy, endorsement_policy_session());
  TPM2B_DIGEST* raw_info = nullptr;
  rc = Esys_ActivateCredential(esys(), object.handle(), ek.handle(), ESYS_TR_PASSWORD,
                               policy.get().handle, ESYS_TR_NONE, &blob, &secret, &raw_info);
  EsysOut<TPM2B_DIGEST> info(raw_info);
  if (rc != TSS2_RC_SUCCESS) return tss_error("activating the credential", rc);
  (void)policy.release();
  return Bytes(info->buffer, info->buffer + info->size);
}

Result<Bytes> Tpm::random(std::size_t size) {
  Bytes out;
  while (out.size() < size) {
    auto chunk = static_cast<UINT16>(std::min(kRandomChunk, size - out.size()));
    TPM2B_DIGEST* raw = nullptr;
    TSS2_RC rc = Esys_GetRandom(esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, chunk, &raw);
    EsysOut<TPM2B_DIGEST> bytes(raw);
    if (rc != TSS2_RC_SUCCESS) return tss_error("reading random bytes from the TPM", rc);
    if (bytes->size == 0) return Error(Errc::kTpm, "the TPM returned no random bytes");
    out.insert(out.end(), bytes->buffer, bytes->buffer + bytes->size);
  }
  out.resize(size);
  return out;
}

Result<void> Tpm::shutdown_state() {
  TSS2_RC rc = Esys_Shutdown(esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_SU_STATE);
  if (rc != TSS2_RC_SUCCESS) return tss_error("saving the TPM state (TPM2_Shutdown)", rc);
  return ok_result();
}

Result<std::size_t> Tpm::loaded_handle_count() {
  std::size_t total = 0;
  for (TPM2_HANDLE first : {TPM2_TRANSIENT_FIRST, TPM2_LOADED_SESSION_FIRST}) {
    TPMI_YES_NO more = TPM2_NO;
    TPMS_CAPABILITY_DATA* raw = nullptr;
    TSS2_RC rc = Esys_GetCapability(esys(), ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                    TPM2_CAP_HANDLES, first, TPM2_MAX_CAP_HANDLES, &more, &raw);
    EsysOut<TPMS_CAPABILITY_DATA> data(raw);
    if (rc != TSS2_RC_SUCCESS) return tss_error("listing loaded handles", rc);
    for (std::uint32_t i = 0; i < data->data.handles.count; ++i) {
      if ((data->data.handles.handle[i] >> 24) == (first >> 24)) ++total;
    }
  }
  return total;
}

}  // namespace ctrust::tpm
