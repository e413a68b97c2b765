// ctrust image: kernel-verifiable image digests.
#include <mutex>

#include "cmd/ctrust/cli.h"
#include "image/manifest.h"
#include "util/file.h"

namespace ctrust::cli {
namespace {

struct ImageDigestArgs {
  std::string source;
  std::string manifest_out;
  std::vector<std::string> xattrs;
  unsigned threads = 0;
  bool json = false;
};

int run_image_digest(const ImageDigestArgs& args) {
  if (args.source.rfind("oci:", 0) == 0) {
    return report_error("OCI image layouts (" + args.source +
                        ") are not supported yet; give a root filesystem directory or "
                        "/proc/PID/root");
  }
  std::mutex mu;
  std::optional<Progress> progress;
  image::ManifestOptions options;
  options.xattrs = args.xattrs;
  options.threads = args.threads;
  // Workers report from several threads; the bar itself is single-threaded.
  options.on_walked = [&](std::uint64_t total) { progress.emplace("hashing", total); };
  options.progress = [&](std::uint64_t n) {
    std::lock_guard lock(mu);
    if (progress) progress->advance(n);
  };
  auto m = image::manifest_from_directory(args.source, options);
  progress.reset();
  if (!m) return report_error(m.error());
  auto digest = m->digest();
  if (!digest) return report_error(digest.error());
  if (!args.manifest_out.empty()) {
    std::string text = m->text();
    auto w = args.manifest_out == "-" ? write_all(STDOUT_FILENO, as_bytes(text))
                                      : write_file_atomic(args.manifest_out, as_bytes(text), 0644);
    if (!w) return report_error(std::move(w).error().with_context(args.manifest_out));
  }
  if (args.json) {
    print_json({{"source", args.source},
                {"digest", "sha256:" + digest->hex()},
                {"entries", m->entries.size()},
                {"bytes", m->total_bytes}});
  } else if (args.manifest_out != "-") {
    std::printf("sha256:%s\n", digest->hex().c_str());
  }
  return kExitOk;
}

}  // namespace

void register_image_commands(CLI::App& app, Context& ctx) {
  CLI::App* image = app.add_subcommand("image", "Kernel-verifiable image digests");
  image->require_subcommand(1);
  auto args = std::make_shared<ImageDigestArgs>();
  CLI::App* c = image->add_subcommand(
      "digest", "Print the image digest of a root filesystem: SHA-256 over its canonical manifest");
  c->add_option("--manifest", args->manifest_out,
                "Also write the canonical manifest to FILE ('-': standard output, instead of "
                "the digest)");
  c->add_option("--xattr", args->xattrs,
                "Record this extended attribute too (security.capability always is); repeat");
  c->add_option("--threads", args->threads, "Hashing threads (default: one per CPU)");
  c->add_flag("--json", args->json, "Print JSON");
  c->add_option("source", args->source, "Root filesystem directory, or /proc/PID/root")->required();
  c->callback([args, &ctx] { ctx.exit_code = run_image_digest(*args); });
}

}  // namespace ctrust::cli
