// ctrust image: kernel-verifiable image digests.
#include <sys/stat.h>

#include <mutex>

#include "cmd/ctrust/cli.h"
#include "image/manifest.h"
#include "image/oci.h"
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

struct OciSource {
  std::string dir;
  std::optional<std::string> tag;
};

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// "oci:DIR[:TAG]": a directory may itself contain ':', so when the whole of DIR[:TAG] names
// an existing directory it is the layout; otherwise the tag follows the last ':'.
std::optional<OciSource> parse_oci_source(const std::string& source) {
  if (source.rfind("oci:", 0) != 0) return std::nullopt;
  std::string rest = source.substr(4);
  std::size_t colon = rest.rfind(':');
  if (is_directory(rest) || colon == std::string::npos) return OciSource{rest, std::nullopt};
  return OciSource{rest.substr(0, colon), rest.substr(colon + 1)};
}

}  // namespace

std::string image_source_problem(const std::string& source) {
  auto oci = parse_oci_source(source);
  if (oci && (oci->dir.empty() || (oci->tag && oci->tag->empty()))) {
    return "an OCI source is oci:DIR or oci:DIR:TAG, not " + source;
  }
  return {};
}

Result<image::Manifest> read_image_source(const std::string& source,
                                          image::ManifestOptions options) {
  auto oci = parse_oci_source(source);
  std::mutex mu;
  std::optional<Progress> progress;
  // Workers report from several threads; the bar itself is single-threaded.
  // For an OCI layout the total and the progress count layer blob bytes.
  options.on_walked = [&](std::uint64_t total) {
    std::lock_guard lock(mu);
    progress.emplace(oci ? "reading layers" : "hashing", total);
  };
  options.progress = [&](std::uint64_t n) {
    std::lock_guard lock(mu);
    if (progress) progress->advance(n);
  };
  auto m = oci ? image::manifest_from_oci_layout(oci->dir, oci->tag, options)
               : image::manifest_from_directory(source, options);
  progress.reset();
  return m;
}

namespace {

int run_image_digest(const ImageDigestArgs& args) {
  image::ManifestOptions options;
  options.xattrs = args.xattrs;
  options.threads = args.threads;
  if (auto problem = image_source_problem(args.source); !problem.empty()) {
    report_error(problem);
    return kExitUsage;
  }
  auto m = read_image_source(args.source, options);
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
      "digest",
      "Print the image digest of a root filesystem or an OCI image: SHA-256 over its canonical "
      "manifest");
  c->add_option("--manifest", args->manifest_out,
                "Also write the canonical manifest to FILE ('-': standard output, instead of "
                "the digest)");
  c->add_option("--xattr", args->xattrs,
                "Record this extended attribute too (security.capability always is); repeat");
  c->add_option("--threads", args->threads, "Hashing threads (default: one per CPU)");
  c->add_flag("--json", args->json, "Print JSON");
  c->add_option("source", args->source,
                "Root filesystem directory, /proc/PID/root, or oci:DIR[:TAG] (an OCI image "
                "layout; the tag is what follows the last ':' unless oci:DIR names an existing "
                "directory; with no tag, the layout must hold one image)")
      ->required();
  c->callback([args, &ctx] { ctx.exit_code = run_image_digest(*args); });
}

}  // namespace ctrust::cli
