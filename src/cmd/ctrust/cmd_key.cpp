// `ctrust key`: generate keys, export public keys, sign and verify files (docs/cli/key.md).
#include <sys/stat.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cmd/ctrust/cli.h"
#include "crypto/keys.h"
#include "util/file.h"

namespace ctrust::cli {
namespace {

// Signing reads the whole file into memory (Ed25519 cannot stream); policies and
// manifests are far smaller than this.
constexpr std::size_t kMaxMessageSize = std::size_t{256} << 20;
// The largest signature we make is 512 bytes (RSA-4096).
constexpr std::size_t kMaxSignatureSize = std::size_t{64} << 10;
constexpr mode_t kPublicFileMode = 0644;

struct GenerateArgs {
  std::string type;
  std::string out;
  std::string public_out;
  bool force = false;
  bool json = false;
};

struct PublicArgs {
  std::string key;
  std::string out;
};

struct SignArgs {
  std::string key;
  std::string hash;
  std::string rsa_padding;
  std::string out;
  std::string file;
};

struct VerifyArgs {
  std::string pub;
  std::string hash;
  std::string rsa_padding;
  std::string signature;
  std::string file;
};

int usage_error(const std::string& message) {
  report_error(message);
  return kExitUsage;
}

std::vector<std::string> key_type_names() {
  std::vector<std::string> names;
  for (auto type :
       {crypto::KeyType::kEcdsaP256, crypto::KeyType::kEcdsaP384, crypto::KeyType::kEd25519,
        crypto::KeyType::kRsa2048, crypto::KeyType::kRsa3072, crypto::KeyType::kRsa4096}) {
    names.emplace_back(crypto::key_type_name(type));
  }
  return names;
}

bool is_rsa(crypto::KeyType type) {
  return type == crypto::KeyType::kRsa2048 || type == crypto::KeyType::kRsa3072 ||
         type == crypto::KeyType::kRsa4096;
}

// lstat, so that a dangling symlink also counts as something we would overwrite.
bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string fingerprint_text(const crypto::Digest& digest) { return "sha256:" + digest.hex(); }

// The key type's defaults, overridden by --hash and --rsa-padding where they apply. An
// option that cannot apply to the key is a usage error rather than silently ignored.
Result<crypto::SignOptions> sign_options(crypto::KeyType type, const std::string& hash,
                                         const std::string& rsa_padding) {
  crypto::SignOptions options = crypto::default_sign_options(type);
  if (!hash.empty()) {
    if (type == crypto::KeyType::kEd25519) {
      return Error(Errc::kInvalidArgument,
                   "--hash does not apply to ed25519 keys (Ed25519 hashes the message itself); "
                   "leave it out");
    }
    auto alg = crypto::parse_hash_alg(hash);
    if (!alg) return Error(Errc::kInvalidArgument, "unknown --hash " + hash);
    options.hash = *alg;
  }
  if (!rsa_padding.empty()) {
    if (!is_rsa(type)) {
      return Error(Errc::kInvalidArgument, "--rsa-padding applies only to RSA keys, not " +
                                               std::string(crypto::key_type_name(type)) +
                                               "; leave it out");
    }
    options.rsa_padding =
        rsa_padding == "pkcs1" ? crypto::RsaPadding::kPkcs1v15 : crypto::RsaPadding::kPss;
  }
  return options;
}

int run_generate(const GenerateArgs& args) {
  auto type = crypto::parse_key_type(args.type);
  if (!type) return usage_error("unknown key type " + args.type);
  if (!args.public_out.empty() && args.public_out == args.out) {
    return usage_error("--out and --public-out must be different files");
  }
  for (const std::string* path : {&args.out, &args.public_out}) {
    if (!path->empty() && !args.force && path_exists(*path)) {
      return report_error(*path +
                          " already exists; choose another file or pass --force to "
                          "overwrite it");
    }
  }

  auto key = crypto::PrivateKey::generate(*type);
  if (!key) return report_error(key.error());
  auto pub = key->public_key();
  if (!pub) return report_error(pub.error());
  auto fingerprint = pub->fingerprint();
  if (!fingerprint) return report_error(fingerprint.error());

  if (auto saved = key->save_pem_file(args.out); !saved) return report_error(saved.error());
  if (!args.public_out.empty()) {
    auto pem = pub->to_pem();
    if (!pem) return report_error(pem.error());
    auto written = write_file_atomic(args.public_out, as_bytes(*pem), kPublicFileMode);
    if (!written) return report_error(written.error());
  }

  if (args.json) {
    nlohmann::json doc = {
        {"type", crypto::key_type_name(*type)},
        {"private_key", args.out},
        {"public_key",
         args.public_out.empty() ? nlohmann::json(nullptr) : nlohmann::json(args.public_out)},
        {"fingerprint", fingerprint_text(*fingerprint)},
    };
    print_json(doc);
  } else {
    std::cout << fingerprint_text(*fingerprint) << '\n';
  }
  return kExitOk;
}

int run_public(const PublicArgs& args) {
  auto key = crypto::PrivateKey::load_pem_file(args.key);
  if (!key) return report_error(key.error());
  auto pub = key->public_key();
  if (!pub) return report_error(pub.error());
  auto pem = pub->to_pem();
  if (!pem) return report_error(pem.error());
  if (args.out.empty()) {
    std::cout << *pem << std::flush;
    return kExitOk;
  }
  auto written = write_file_atomic(args.out, as_bytes(*pem), kPublicFileMode);
  if (!written) return report_error(written.error());
  return kExitOk;
}

int run_sign(const SignArgs& args) {
  auto key = crypto::PrivateKey::load_pem_file(args.key);
  if (!key) return report_error(key.error());
  auto options = sign_options(key->type(), args.hash, args.rsa_padding);
  if (!options) return usage_error(options.error().message());
  auto message = read_file(args.file, kMaxMessageSize);
  if (!message) return report_error(message.error());
  auto signature = key->sign(*message, *options);
  if (!signature) return report_error(std::move(signature).error().with_context(args.file));
  auto written = write_file_atomic(args.out, *signature, kPublicFileMode);
  if (!written) return report_error(written.error());
  return kExitOk;
}

int run_verify(const VerifyArgs& args) {
  auto pub = crypto::PublicKey::load_pem_file(args.pub);
  if (!pub) return report_error(pub.error());
  auto options = sign_options(pub->type(), args.hash, args.rsa_padding);
  if (!options) return usage_error(options.error().message());
  auto signature = read_file(args.signature, kMaxSignatureSize);
  if (!signature) return report_error(signature.error());
  auto message = read_file(args.file, kMaxMessageSize);
  if (!message) return report_error(message.error());
  auto valid = pub->verify(*message, *signature, *options);
  if (!valid) return report_error(std::move(valid).error().with_context(args.file));
  if (!*valid) {
    std::cout << "signature does not verify\n";
    return kExitRejected;
  }
  std::cout << "signature verifies\n";
  return kExitOk;
}

// --hash and --rsa-padding, shared by sign and verify (which must agree on them).
void add_scheme_options(CLI::App* cmd, std::string& hash, std::string& rsa_padding) {
  cmd->add_option("--hash", hash,
                  "Digest for ECDSA and RSA (default sha384 for ecdsa-p384, else sha256; "
                  "not for ed25519)")
      ->check(CLI::IsMember({"sha256", "sha384", "sha512"}, CLI::ignore_case));
  cmd->add_option("--rsa-padding", rsa_padding, "RSA padding: pss (default) or pkcs1 (v1.5)")
      ->check(CLI::IsMember({"pss", "pkcs1"}, CLI::ignore_case));
}

void add_generate(CLI::App* key, Context& ctx) {
  auto args = std::make_shared<GenerateArgs>();
  auto* cmd = key->add_subcommand(
      "generate", "Generate a new private key (unencrypted PEM, mode 0600); print its fingerprint");
  cmd->add_option("--type", args->type, "Key type")
      ->required()
      ->check(CLI::IsMember(key_type_names(), CLI::ignore_case));
  cmd->add_option("--out", args->out, "Write the private key here (PKCS#8 PEM, mode 0600)")
      ->required();
  cmd->add_option("--public-out", args->public_out, "Also write the public key PEM here");
  cmd->add_flag("--force", args->force, "Overwrite existing output files");
  cmd->add_flag("--json", args->json, "Print {type, private_key, public_key, fingerprint} as JSON");
  cmd->callback([args, &ctx] { ctx.exit_code = run_generate(*args); });
}

void add_public(CLI::App* key, Context& ctx) {
  auto args = std::make_shared<PublicArgs>();
  auto* cmd = key->add_subcommand("public", "Print (or write) the public key PEM of a private key");
  cmd->add_option("KEY", args->key, "Private key PEM file")->required();
  cmd->add_option("--out", args->out, "Write the public key here instead of stdout");
  cmd->callback([args, &ctx] { ctx.exit_code = run_public(*args); });
}

void add_sign(CLI::App* key, Context& ctx) {
  auto args = std::make_shared<SignArgs>();
  auto* cmd = key->add_subcommand("sign", "Sign a file; write the raw signature to --out");
  cmd->add_option("--key", args->key, "Private key PEM file")->required();
  add_scheme_options(cmd, args->hash, args->rsa_padding);
  cmd->add_option("--out", args->out,
                  "Write the signature here (raw bytes; DER for ECDSA, as openssl dgst uses)")
      ->required();
  cmd->add_option("FILE", args->file, "File to sign")->required();
  cmd->callback([args, &ctx] { ctx.exit_code = run_sign(*args); });
}

void add_verify(CLI::App* key, Context& ctx) {
  auto args = std::make_shared<VerifyArgs>();
  auto* cmd = key->add_subcommand(
      "verify", "Verify a file's signature (exit 0 valid, 1 does not verify, 3 unreadable input)");
  cmd->add_option("--pub", args->pub, "Public key PEM file")->required();
  add_scheme_options(cmd, args->hash, args->rsa_padding);
  cmd->add_option("--signature", args->signature, "Signature file (raw bytes)")->required();
  cmd->add_option("FILE", args->file, "File that was signed")->required();
  cmd->callback([args, &ctx] { ctx.exit_code = run_verify(*args); });
}

}  // namespace

void register_key_commands(CLI::App& app, Context& ctx) {
  auto* key = app.add_subcommand("key", "Generate keys, export public keys, sign and verify files");
  key->require_subcommand(1);
  add_generate(key, ctx);
  add_public(key, ctx);
  add_sign(key, ctx);
  add_verify(key, ctx);
}

}  // namespace ctrust::cli
