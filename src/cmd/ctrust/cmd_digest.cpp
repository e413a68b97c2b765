// ctrust digest: file digests in the sha256sum format, or fs-verity digests in the
// `fsverity digest` format.
#include <sys/stat.h>

#include <cstdio>
#include <iostream>

#include "cmd/ctrust/cli.h"
#include "crypto/digest.h"
#include "crypto/fsverity.h"
#include "util/file.h"

namespace ctrust::cli {
namespace {

struct DigestArgs {
  std::string alg;
  bool fsverity = false;
  std::string salt_hex;
  std::uint32_t block_size = 4096;
  bool json = false;
  std::vector<std::string> files;
};

// sha256sum escapes names holding a backslash or newline and marks the line with '\'.
std::string sum_line(const std::string& hex, const std::string& name) {
  if (name.find_first_of("\\\n") == std::string::npos) return hex + "  " + name;
  std::string escaped;
  for (char c : name) {
    if (c == '\\') {
      escaped += "\\\\";
    } else if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  return "\\" + hex + "  " + escaped;
}

std::uint64_t total_size(const std::vector<std::string>& files) {
  std::uint64_t total = 0;
  for (const auto& f : files) {
    struct stat st {};
    if (f != "-" && ::stat(f.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      total += static_cast<std::uint64_t>(st.st_size);
    }
  }
  return total;
}

int run_digest(const DigestArgs& args) {
  auto alg = crypto::parse_hash_alg(args.alg.empty() ? "sha256" : args.alg);
  if (!alg)
    return report_error("unknown algorithm '" + args.alg + "' (use sha1, sha256, sha384, sha512)");
  crypto::FsVerityParams params;
  if (args.fsverity) {
    params.alg = *alg;
    params.block_size = args.block_size;
    if (!args.salt_hex.empty()) {
      auto salt = from_hex(args.salt_hex);
      if (!salt) return report_error("--salt: " + salt.error().message());
      params.salt = std::move(*salt);
    }
    if (auto v = crypto::validate(params); !v) return report_error(v.error());
  } else if (!args.salt_hex.empty() || args.block_size != 4096) {
    return report_error("--salt and --block-size apply only with --fsverity");
  }

  Progress progress("hashing", total_size(args.files));
  auto on_progress = [&](std::uint64_t n) { progress.advance(n); };
  int rc = kExitOk;
  nlohmann::json out = nlohmann::json::array();
  for (const std::string& file : args.files) {
    UniqueFd fd;
    if (file == "-") {
      fd.reset(::dup(STDIN_FILENO));
    } else {
      auto opened = open_read(file);
      if (!opened) {
        progress.finish();
        rc = report_error(opened.error());
        if (args.json) out.push_back({{"file", file}, {"error", opened.error().message()}});
        continue;
      }
      fd = std::move(*opened);
    }
    auto d = args.fsverity ? crypto::fsverity_digest_fd(fd.get(), params, on_progress)
                           : crypto::digest_fd(*alg, fd.get(), on_progress);
    if (!d) {
      progress.finish();
      Error e = std::move(d).error().with_context(file);
      rc = report_error(e);
      if (args.json) out.push_back({{"file", file}, {"error", e.message()}});
      continue;
    }
    std::string alg_name(crypto::hash_name(*alg));
    if (args.json) {
      nlohmann::json item = {
          {"file", file}, {"alg", alg_name}, {"digest", d->hex()}, {"fsverity", args.fsverity}};
      if (args.fsverity) item["block_size"] = params.block_size;
      out.push_back(std::move(item));
    } else if (args.fsverity) {
      std::printf("%s:%s %s\n", alg_name.c_str(), d->hex().c_str(), file.c_str());
    } else {
      std::printf("%s\n", sum_line(d->hex(), file).c_str());
    }
  }
  progress.finish();
  if (args.json) print_json(out);
  return rc;
}

}  // namespace

void register_digest_commands(CLI::App& app, Context& ctx) {
  auto args = std::make_shared<DigestArgs>();
  CLI::App* cmd = app.add_subcommand(
      "digest", "Print file digests (sha256sum format), or fs-verity digests (fsverity format)");
  cmd->add_option("--alg,-a", args->alg, "Hash algorithm: sha1, sha256 (default), sha384, sha512");
  cmd->add_flag("--fsverity", args->fsverity,
                "Print the fs-verity file digest (Merkle tree + descriptor), as `fsverity digest`");
  cmd->add_option("--salt", args->salt_hex, "fs-verity salt, hex (at most 32 bytes)");
  cmd->add_option("--block-size", args->block_size,
                  "fs-verity Merkle tree block size (default 4096)");
  cmd->add_flag("--json", args->json, "Print JSON");
  cmd->add_option("files", args->files, "Files to hash ('-' for standard input)")->required();
  cmd->callback([args, &ctx] { ctx.exit_code = run_digest(*args); });
}

}  // namespace ctrust::cli
