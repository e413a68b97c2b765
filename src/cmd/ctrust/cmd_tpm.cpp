// `ctrust tpm`: talk to a TPM 2.0 (docs/cli/tpm.md). quote and checkquote read and write
// the same files as tpm2_quote and tpm2_checkquote, so either side can be swapped.
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cmd/ctrust/cli.h"
#include "tpm/attest.h"
#include "tpm/tpm.h"
#include "util/file.h"

namespace ctrust::cli {
namespace {

constexpr const char* kDefaultTcti = "device:/dev/tpmrm0";
constexpr std::size_t kMaxEvidenceFile = 64 << 10;
constexpr std::size_t kMaxExtendData = std::size_t{1} << 30;
constexpr mode_t kOutputMode = 0644;

int usage_error(const std::string& message) {
  report_error(message);
  return kExitUsage;
}

// --tcti, else $CTRUST_TCTI, else the kernel's resource manager.
std::string resolve_tcti(const std::string& option) {
  if (!option.empty()) return option;
  const char* env = std::getenv("CTRUST_TCTI");
  if (env != nullptr && *env != '\0') return env;
  return kDefaultTcti;
}

void add_tcti_option(CLI::App* cmd, std::string& tcti) {
  cmd->add_option("--tcti,-T", tcti,
                  "TPM to use: device:/dev/tpmrm0, swtpm:path=SOCKET, mssim:host=H,port=P "
                  "(default: $CTRUST_TCTI, else device:/dev/tpmrm0)");
}

Result<tpm::Tpm> open_tpm(const std::string& tcti_option) {
  // The TSS logs its own view of every failure on stderr; we print one decoded line.
  ::setenv("TSS2_LOG", "all+none", 0);
  return tpm::Tpm::open(resolve_tcti(tcti_option));
}

// Hex as tpm2-tools accepts it: optional 0x prefix.
Result<Bytes> parse_hex_option(const std::string& name, std::string text) {
  if (text.rfind("0x", 0) == 0 || text.rfind("0X", 0) == 0) text = text.substr(2);
  auto bytes = from_hex(text);
  if (!bytes)
    return Error(Errc::kInvalidArgument, name + " must be hex: " + bytes.error().message());
  return bytes;
}

Result<TPM2_HANDLE> parse_handle(const std::string& text) {
  char* end = nullptr;
  unsigned long value = std::strtoul(text.c_str(), &end, 0);
  if (text.empty() || *end != '\0' || value < 0x81000000UL || value > 0x81ffffffUL) {
    return Error(Errc::kInvalidArgument,
                 "bad persistent handle '" + text + "' (expected 0x81000000-0x81ffffff)");
  }
  return static_cast<TPM2_HANDLE>(value);
}

std::string handle_text(TPM2_HANDLE handle) {
  std::ostringstream out;
  out << "0x" << std::hex << handle;
  return out.str();
}

std::string banks_text(const std::vector<crypto::HashAlg>& banks) {
  std::string out;
  for (auto alg : banks) {
    if (!out.empty()) out += ",";
    out += crypto::hash_name(alg);
  }
  return out;
}

nlohmann::json pcr_json(const tpm::PcrValues& values) {
  nlohmann::json doc = nlohmann::json::object();
  std::size_t i = 0;
  for (const auto& bank : values.selection) {
    nlohmann::json entries = nlohmann::json::object();
    for (unsigned pcr : bank.pcrs) entries[std::to_string(pcr)] = values.values[i++].hex();
    doc[std::string(crypto::hash_name(bank.alg))] = entries;
  }
  return doc;
}

// tpm2_pcrread's layout.
void print_pcrs(const tpm::PcrValues& values) {
  std::size_t i = 0;
  for (const auto& bank : values.selection) {
    std::cout << "  " << crypto::hash_name(bank.alg) << ":\n";
    for (unsigned pcr : bank.pcrs) {
      std::string hex = values.values[i++].hex();
      for (auto& c : hex) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      std::cout << "    " << std::setw(2) << pcr << ": 0x" << hex << '\n';
    }
  }
}

Result<void> write_output(const std::string& path, ByteView bytes) {
  if (path.empty()) return ok_result();
  return write_file_atomic(path, bytes, kOutputMode);
}

// ---- info -------------------------------------------------------------------------------

struct InfoArgs {
  std::string tcti;
  bool json = false;
};

int run_info(const InfoArgs& args) {
  auto tpm = open_tpm(args.tcti);
  if (!tpm) return report_error(tpm.error());
  auto info = tpm->info();
  if (!info) return report_error(info.error());
  // The two firmware words as tpm2_getcap shows them (their meaning is the vendor's).
  char fw[32];
  std::snprintf(fw, sizeof(fw), "%08x.%08x", static_cast<unsigned>(info->firmware_version >> 32),
                static_cast<unsigned>(info->firmware_version & 0xffffffffU));
  if (args.json) {
    nlohmann::json banks = nlohmann::json::array();
    for (auto alg : info->active_banks) banks.push_back(crypto::hash_name(alg));
    print_json({{"tcti", tpm->tcti()},
                {"family", info->family},
                {"revision", info->revision / 100.0},
                {"manufacturer", info->manufacturer},
                {"vendor", info->vendor},
                {"firmware", fw},
                {"pcr_banks", banks}});
    return kExitOk;
  }
  std::cout << "tcti:         " << tpm->tcti() << '\n'
            << "family:       " << info->family << " (revision " << info->revision / 100 << '.'
            << std::setw(2) << std::setfill('0') << info->revision % 100 << std::setfill(' ')
            << ")\n"
            << "manufacturer: " << info->manufacturer << '\n'
            << "vendor:       " << info->vendor << '\n'
            << "firmware:     " << fw << '\n'
            << "PCR banks:    " << banks_text(info->active_banks) << '\n';
  return kExitOk;
}

// ---- pcrread ----------------------------------------------------------------------------

struct PcrReadArgs {
  std::string tcti;
  std::string list;
  std::string out;
  bool json = false;
};

int run_pcrread(const PcrReadArgs& args) {
  tpm::PcrSelection selection;
  if (!args.list.empty()) {
    auto parsed = tpm::parse_pcr_list(args.list);
    if (!parsed) return usage_error(parsed.error().message());
    selection = *parsed;
  }
  auto tpm = open_tpm(args.tcti);
  if (!tpm) return report_error(tpm.error());
  if (selection.empty()) {
    auto banks = tpm->active_banks();
    if (!banks) return report_error(banks.error());
    for (auto alg : *banks) {
      tpm::PcrBank bank{alg, {}};
      for (unsigned i = 0; i < tpm::kPcrCount; ++i) bank.pcrs.push_back(i);
      selection.push_back(bank);
    }
  }
  auto values = tpm->pcr_read(selection);
  if (!values) return report_error(values.error());
  if (auto written = write_output(args.out, tpm::encode_pcr_file(*values)); !written) {
    return report_error(written.error());
  }
  if (args.json) {
    print_json(pcr_json(*values));
  } else {
    print_pcrs(*values);
  }
  return kExitOk;
}

// ---- extend -----------------------------------------------------------------------------

struct ExtendArgs {
  std::string tcti;
  unsigned pcr = 0;
  std::string data;
  std::vector<std::string> digests;
  bool json = false;
};

int run_extend(const ExtendArgs& args) {
  if (args.data.empty() == args.digests.empty()) {
    return usage_error("give either --data FILE or --digest BANK:HEX (one per bank)");
  }
  std::vector<crypto::Digest> digests;
  for (const auto& text : args.digests) {
    auto colon = text.find(':');
    auto alg =
        colon == std::string::npos ? std::nullopt : crypto::parse_hash_alg(text.substr(0, colon));
    if (!alg) return usage_error("bad --digest '" + text + "' (expected sha256:HEX)");
    auto digest = crypto::Digest::from_hex(*alg, text.substr(colon + 1));
    if (!digest) return usage_error("bad --digest '" + text + "': " + digest.error().message());
    digests.push_back(*digest);
  }
  Bytes data;
  if (!args.data.empty()) {
    auto read = read_file(args.data, kMaxExtendData);
    if (!read) return report_error(read.error());
    data = std::move(*read);
  }
  auto tpm = open_tpm(args.tcti);
  if (!tpm) return report_error(tpm.error());
  if (!args.data.empty()) {
    auto extended = tpm->pcr_extend_data(args.pcr, data);
    if (!extended) return report_error(extended.error());
    digests = *extended;
  } else if (auto extended = tpm->pcr_extend(args.pcr, digests); !extended) {
    return report_error(extended.error());
  }
  if (args.json) {
    nlohmann::json doc = nlohmann::json::object();
    for (const auto& d : digests) doc[std::string(crypto::hash_name(d.alg))] = d.hex();
    print_json({{"pcr", args.pcr}, {"extended", doc}});
  } else {
    for (const auto& d : digests) {
      std::cout << "extended PCR " << args.pcr << " " << crypto::hash_name(d.alg) << ":" << d.hex()
                << '\n';
    }
  }
  return kExitOk;
}

// ---- ek / ak ----------------------------------------------------------------------------

struct EkArgs {
  std::string tcti;
  std::string alg = "rsa";
  std::string public_out;
  std::string certificate_out;
  bool json = false;
};

int run_ek(const EkArgs& args) {
  auto alg = tpm::parse_key_alg(args.alg);
  if (!alg) return usage_error(alg.error().message());
  auto tpm = open_tpm(args.tcti);
  if (!tpm) return report_error(tpm.error());
  auto ek = tpm->endorsement_key(*alg);
  if (!ek) return report_error(ek.error());
  auto key = ek->public_area().public_key();
  if (!key) return report_error(key.error());
  auto pem = key->to_pem();
  auto fingerprint = key->fingerprint();
  if (!pem || !fingerprint) return report_error("cannot encode the EK public key");
  if (auto written = write_output(args.public_out, as_bytes(*pem)); !written) {
    return report_error(written.error());
  }
  auto cert = tpm->ek_certificate(*alg);
  if (!cert) return report_error(cert.error());
  std::string cert_pem;
  std::string cert_issuer;
  if (cert->has_value()) {
    const Bytes& der = **cert;
    auto parsed = crypto::Certificate::from_der(der);
    if (!parsed) return report_error(std::move(parsed).error().with_context("EK certificate"));
    auto text = parsed->to_pem();
    if (!text) return report_error(text.error());
    cert_pem = *text;
    cert_issuer = parsed->issuer();
  }
  if (!args.certificate_out.empty()) {
    if (cert_pem.empty()) {
      return report_error("the TPM holds no " + std::string(tpm::key_alg_name(*alg)) +
                          " EK certificate (NV index " +
                          handle_text(tpm::ek_certificate_nv_index(*alg)) + " is not defined)");
    }
    if (auto written = write_output(args.certificate_out, as_bytes(cert_pem)); !written) {
      return report_error(written.error());
    }
  }
  if (args.json) {
    print_json(
        {{"alg", tpm::key_alg_name(*alg)},
         {"name", to_hex(ek->name())},
         {"fingerprint", "sha256:" + fingerprint->hex()},
         {"certificate", cert_pem.empty() ? nlohmann::json(nullptr) : nlohmann::json(cert_pem)},
         {"certificate_issuer",
          cert_pem.empty() ? nlohmann::json(nullptr) : nlohmann::json(cert_issuer)}});
  } else {
    std::cout << "name:        " << to_hex(ek->name()) << '\n'
              << "fingerprint: sha256:" << fingerprint->hex() << '\n'
              << "certificate: "
              << (cert_pem.empty() ? std::string("none") : "issued by " + cert_issuer) << '\n';
  }
  return kExitOk;
}

struct AkArgs {
  std::string tcti;
  std::string alg = "ecc";
  std::string handle = "0x81010002";
  std::string public_out;
  std::string name_out;
  std::string tpm_public_out;
  bool json = false;
};

int run_ak(const AkArgs& args) {
  auto alg = tpm::parse_key_alg(args.alg);
  if (!alg) return usage_error(alg.error().message());
  auto handle = parse_handle(args.handle);
  if (!handle) return usage_error(handle.error().message());
  auto tpm = open_tpm(args.tcti);
  if (!tpm) return report_error(tpm.error());
  auto ak = tpm->attestation_key(*alg, *handle);
  if (!ak) return report_error(ak.error());
  auto key = ak->public_area().public_key();
  if (!key) return report_error(key.error());
  auto pem = key->to_pem();
  auto fingerprint = key->fingerprint();
  if (!pem || !fingerprint) return report_error("cannot encode the AK public key");
  for (auto [path, bytes] : {std::pair{args.public_out, as_bytes(*pem)},
                             std::pair{args.name_out, ByteView(ak->name())}}) {
    if (auto written = write_output(path, bytes); !written) return report_error(written.error());
  }
  if (auto written = write_output(args.tpm_public_out, ak->public_area().marshal_tpm2b());
      !written) {
    return report_error(written.error());
  }
  if (args.json) {
    print_json({{"alg", tpm::key_alg_name(*alg)},
                {"handle", handle_text(*handle)},
                {"name", to_hex(ak->name())},
                {"fingerprint", "sha256:" + fingerprint->hex()}});
  } else {
    std::cout << "handle:      " << handle_text(*handle) << '\n'
              << "name:        " << to_hex(ak->name()) << '\n'
              << "fingerprint: sha256:" << fingerprint->hex() << '\n';
  }
  return kExitOk;
}

// ---- quote / checkquote -----------------------------------------------------------------

struct QuoteArgs {
  std::string tcti;
  std::string alg = "ecc";
  std::string handle = "0x81010002";
  std::string pcr_list;
  std::string qualification;
  std::string message;
  std::string signature;
  std::string pcr;
  bool json = false;
};

int run_quote(const QuoteArgs& args) {
  auto alg = tpm::parse_key_alg(args.alg);
  if (!alg) return usage_error(alg.error().message());
  auto handle = parse_handle(args.handle);
  if (!handle) return usage_error(handle.error().message());
  auto selection = tpm::parse_pcr_list(args.pcr_list);
  if (!selection) return usage_error(selection.error().message());
  Bytes nonce;
  if (!args.qualification.empty()) {
    auto parsed = parse_hex_option("--qualification", args.qualification);
    if (!parsed) return usage_error(parsed.error().message());
    nonce = *parsed;
  }
  auto tpm = open_tpm(args.tcti);
  if (!tpm) return report_error(tpm.error());
  auto ak = tpm->attestation_key(*alg, *handle);
  if (!ak) return report_error(ak.error());
  auto quote = tpm->quote(*ak, *selection, nonce);
  if (!quote) return report_error(quote.error());
  for (auto [path, bytes] : {std::pair{args.message, ByteView(quote->message)},
                             std::pair{args.signature, ByteView(quote->signature)}}) {
    if (auto written = write_output(path, bytes); !written) return report_error(written.error());
  }
  if (auto written = write_output(args.pcr, tpm::encode_pcr_file(quote->pcrs)); !written) {
    return report_error(written.error());
  }
  if (args.json) {
    print_json({{"message", to_hex(quote->message)},
                {"signature", to_hex(quote->signature)},
                {"pcrs", pcr_json(quote->pcrs)}});
  } else {
    std::cout << "quoted: " << to_hex(quote->message) << '\n'
              << "signature: " << to_hex(quote->signature) << '\n'
              << "pcrs:\n";
    print_pcrs(quote->pcrs);
  }
  return kExitOk;
}

struct CheckQuoteArgs {
  bool qualification_given = false;
  std::string public_key;
  std::string message;
  std::string signature;
  std::string pcr;
  std::string qualification;
  bool json = false;
};

int run_checkquote(const CheckQuoteArgs& args) {
  std::optional<Bytes> nonce;
  if (args.qualification_given) {
    auto parsed = parse_hex_option("--qualification", args.qualification);
    if (!parsed) return usage_error(parsed.error().message());
    nonce = *parsed;
  } else {
    std::cerr << "ctrust: warn: no --qualification: the nonce is not checked, so this quote "
                 "may be a replay\n";
  }
  auto key = crypto::PublicKey::load_pem_file(args.public_key);
  if (!key) return report_error(key.error());
  auto message = read_file(args.message, kMaxEvidenceFile);
  if (!message) return report_error(message.error());
  auto signature = read_file(args.signature, kMaxEvidenceFile);
  if (!signature) return report_error(signature.error());
  std::optional<tpm::PcrValues> pcrs;
  if (!args.pcr.empty()) {
    auto bytes = read_file(args.pcr, kMaxEvidenceFile);
    if (!bytes) return report_error(bytes.error());
    auto decoded = tpm::decode_pcr_file(*bytes);
    if (!decoded) return report_error(std::move(decoded).error().with_context(args.pcr));
    pcrs = std::move(*decoded);
  }
  auto verdict = tpm::verify_quote(*key, *message, *signature,
                                   nonce ? std::optional<ByteView>(*nonce) : std::nullopt,
                                   pcrs ? &*pcrs : nullptr);
  if (!verdict) return report_error(verdict.error());
  if (args.json) {
    nlohmann::json doc = {{"valid", verdict->ok()},
                          {"problems", verdict->problems},
                          {"nonce_checked", nonce.has_value()}};
    if (verdict->attestation.type != 0) {
      doc["pcr_selection"] = tpm::format_pcr_list(verdict->attestation.pcr_selection);
      doc["clock"] = verdict->attestation.clock;
      doc["reset_count"] = verdict->attestation.reset_count;
      doc["restart_count"] = verdict->attestation.restart_count;
    }
    if (pcrs) doc["pcrs"] = pcr_json(*pcrs);
    print_json(doc);
  } else if (verdict->ok()) {
    std::cout << "quote verifies";
    if (pcrs) std::cout << " (PCRs " << tpm::format_pcr_list(pcrs->selection) << ")";
    std::cout << '\n';
    if (pcrs) print_pcrs(*pcrs);
  } else {
    std::cout << "quote does not verify:\n";
    for (const auto& p : verdict->problems) std::cout << "  " << p << '\n';
  }
  return verdict->ok() ? kExitOk : kExitRejected;
}

void add_ak_selection(CLI::App* cmd, std::string& alg, std::string& handle) {
  cmd->add_option("--ak-alg", alg, "Attestation key algorithm: ecc (default) or rsa")
      ->check(CLI::IsMember({"ecc", "rsa"}));
  cmd->add_option("--ak-handle", handle,
                  "Persistent handle of ctrust's attestation key (default 0x81010002)");
}

}  // namespace

void register_tpm_commands(CLI::App& app, Context& ctx) {
  auto* group = app.add_subcommand("tpm", "Talk to a TPM 2.0: PCRs, keys and quotes");
  group->require_subcommand(1);

  {
    auto args = std::make_shared<InfoArgs>();
    auto* cmd = group->add_subcommand("info", "Show the TPM's maker, firmware and PCR banks");
    add_tcti_option(cmd, args->tcti);
    cmd->add_flag("--json", args->json, "Print JSON");
    cmd->callback([args, &ctx] { ctx.exit_code = run_info(*args); });
  }
  {
    auto args = std::make_shared<PcrReadArgs>();
    auto* cmd = group->add_subcommand("pcrread", "Print PCR values (default: every active bank)");
    add_tcti_option(cmd, args->tcti);
    cmd->add_option("PCR_LIST", args->list, "e.g. sha256:10,16+sha1:0 or sha256:all");
    cmd->add_option("--output,-o", args->out, "Also write the values as a tpm2-tools PCR file");
    cmd->add_flag("--json", args->json, "Print {bank: {pcr: hex}} as JSON");
    cmd->callback([args, &ctx] { ctx.exit_code = run_pcrread(*args); });
  }
  {
    auto args = std::make_shared<ExtendArgs>();
    auto* cmd = group->add_subcommand(
        "extend", "Extend a PCR: with a file's hash in every active bank, or with given digests");
    add_tcti_option(cmd, args->tcti);
    cmd->add_option("--pcr", args->pcr, "PCR index (0-23)")->required()->check(CLI::Range(0, 23));
    cmd->add_option("--data", args->data, "Hash this file in each active bank and extend that");
    cmd->add_option("--digest", args->digests, "BANK:HEX to extend (repeat for each bank)");
    cmd->add_flag("--json", args->json, "Print the digests extended as JSON");
    cmd->callback([args, &ctx] { ctx.exit_code = run_extend(*args); });
  }
  {
    auto args = std::make_shared<EkArgs>();
    auto* cmd = group->add_subcommand(
        "ek", "Create the TCG default endorsement key; print it and its certificate's issuer");
    add_tcti_option(cmd, args->tcti);
    cmd->add_option("--alg", args->alg, "rsa (default, TCG template L-1) or ecc (L-2)")
        ->check(CLI::IsMember({"ecc", "rsa"}));
    cmd->add_option("--public", args->public_out, "Write the EK public key PEM here");
    cmd->add_option("--certificate", args->certificate_out,
                    "Write the EK certificate (PEM) from NV here; an error when there is none");
    cmd->add_flag("--json", args->json, "Print JSON");
    cmd->callback([args, &ctx] { ctx.exit_code = run_ek(*args); });
  }
  {
    auto args = std::make_shared<AkArgs>();
    auto* cmd = group->add_subcommand(
        "ak", "Create (or reuse) ctrust's persistent attestation key; write its public key");
    add_tcti_option(cmd, args->tcti);
    cmd->add_option("--alg", args->alg, "ecc (default, ECDSA P-256/SHA-256) or rsa (RSASSA 2048)")
        ->check(CLI::IsMember({"ecc", "rsa"}));
    cmd->add_option("--handle", args->handle, "Persistent handle (default 0x81010002)");
    cmd->add_option("--public,-u", args->public_out, "Write the AK public key PEM here");
    cmd->add_option("--name,-n", args->name_out, "Write the AK's TPM Name (binary) here");
    cmd->add_option("--tpm-public", args->tpm_public_out,
                    "Write the AK's TPM2B_PUBLIC here (tpm2-tools .pub format)");
    cmd->add_flag("--json", args->json, "Print JSON");
    cmd->callback([args, &ctx] { ctx.exit_code = run_ak(*args); });
  }
  {
    auto args = std::make_shared<QuoteArgs>();
    auto* cmd = group->add_subcommand(
        "quote", "Quote PCRs with ctrust's attestation key; writes tpm2_quote's three files");
    add_tcti_option(cmd, args->tcti);
    add_ak_selection(cmd, args->alg, args->handle);
    cmd->add_option("--pcr-list,-l", args->pcr_list, "PCRs to quote, e.g. sha256:10,16")
        ->required();
    cmd->add_option("--qualification,-q", args->qualification, "Nonce (hex)");
    cmd->add_option("--message,-m", args->message, "Write the quoted TPMS_ATTEST here");
    cmd->add_option("--signature,-s", args->signature, "Write the TPMT_SIGNATURE here");
    cmd->add_option("--pcr,-o", args->pcr, "Write the PCR values (tpm2-tools format) here");
    cmd->add_flag("--json", args->json, "Print the quote as JSON (hex)");
    cmd->callback([args, &ctx] { ctx.exit_code = run_quote(*args); });
  }
  {
    auto args = std::make_shared<CheckQuoteArgs>();
    auto* cmd = group->add_subcommand(
        "checkquote",
        "Verify a quote in software (exit 0 valid, 1 rejected, 3 unreadable input); no TPM needed");
    cmd->add_option("--public,-u", args->public_key, "AK public key PEM")->required();
    cmd->add_option("--message,-m", args->message, "Quoted TPMS_ATTEST")->required();
    cmd->add_option("--signature,-s", args->signature, "TPMT_SIGNATURE")->required();
    cmd->add_option("--pcr,-f", args->pcr, "PCR values (tpm2-tools format); checks the digest");
    auto* q = cmd->add_option("--qualification,-q", args->qualification,
                              "Expected nonce (hex); without it the nonce is not checked");
    cmd->add_flag("--json", args->json, "Print {valid, problems, nonce_checked, ...} as JSON");
    cmd->callback([args, q, &ctx] {
      args->qualification_given = q->count() > 0;
      ctx.exit_code = run_checkquote(*args);
    });
  }
}

}  // namespace ctrust::cli
