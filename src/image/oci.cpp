#include "image/oci.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <thread>

#include "util/file.h"
#include "util/json.h"
#include "util/text.h"

namespace ctrust::image {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kDockerManifestType =
    "application/vnd.docker.distribution.manifest.v2+json";
constexpr std::string_view kDockerListType =
    "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::size_t kMaxSmallFile = std::size_t{64} * 1024;  // oci-layout
constexpr std::size_t kReadChunk = std::size_t{256} * 1024;

std::string shown(std::string_view s) { return printable(s, 128); }

// Duplicate keys are refused: another runtime reading the same verified blob must not see
// other values than we do.
Result<Json> parse_json(std::string_view text, const std::string& what) {
  auto j = parse_json_strict(text, kMaxJsonDepth);
  if (!j) return Error(Errc::kFormat, what + " is not valid JSON: " + j.error().message());
  if (!j->is_object()) return Error(Errc::kFormat, what + " is not a JSON object");
  return j;
}

// A string member; absent is an error when `required`, otherwise "".
Result<std::string> string_field(const Json& obj, const char* key, bool required,
                                 const std::string& what) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) return Error(Errc::kFormat, what + " has no \"" + key + "\"");
    return std::string();
  }
  if (!it->is_string()) return Error(Errc::kFormat, what + ": \"" + key + "\" is not a string");
  return it->get<std::string>();
}

Result<void> check_schema_version(const Json& obj, const std::string& what) {
  auto it = obj.find("schemaVersion");
  if (it == obj.end() || !it->is_number_integer() || it->get<std::int64_t>() != 2) {
    return Error(Errc::kFormat, what + " does not have schemaVersion 2");
  }
  return ok_result();
}

Result<Descriptor> parse_descriptor(const Json& j, const std::string& what) {
  if (!j.is_object()) return Error(Errc::kFormat, what + " is not a JSON object");
  Descriptor d;
  CTRUST_ASSIGN_OR_RETURN(d.media_type, string_field(j, "mediaType", true, what));
  CTRUST_ASSIGN_OR_RETURN(std::string digest, string_field(j, "digest", true, what));
  auto parsed = parse_oci_digest(digest);
  if (!parsed) return std::move(parsed).error().with_context(what);
  d.digest = *parsed;
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_integer() || size->get<std::int64_t>() < 0) {
    return Error(Errc::kFormat, what + " has no valid \"size\"");
  }
  d.size = static_cast<std::uint64_t>(size->get<std::int64_t>());
  if (auto a = j.find("annotations"); a != j.end()) {
    if (!a->is_object()) return Error(Errc::kFormat, what + ": \"annotations\" is not an object");
    for (const auto& [key, value] : a->items()) {
      if (!value.is_string()) {
        return Error(Errc::kFormat, what + ": annotation " + shown(key) + " is not a string");
      }
      d.annotations[key] = value.get<std::string>();
    }
  }
  if (auto p = j.find("platform"); p != j.end()) {
    std::string pw = what + ": platform";
    if (!p->is_object()) return Error(Errc::kFormat, pw + " is not an object");
    CTRUST_ASSIGN_OR_RETURN(d.os, string_field(*p, "os", false, pw));
    CTRUST_ASSIGN_OR_RETURN(d.architecture, string_field(*p, "architecture", false, pw));
    CTRUST_ASSIGN_OR_RETURN(d.variant, string_field(*p, "variant", false, pw));
  }
  return d;
}

Result<std::vector<Descriptor>> parse_descriptors(const Json& obj, const char* key,
                                                  const std::string& what) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_array()) {
    return Error(Errc::kFormat, what + " has no \"" + key + "\" array");
  }
  if (it->size() > kMaxDescriptors) {
    return Error(Errc::kLimit,
                 what + " has more than " + std::to_string(kMaxDescriptors) + " " + key);
  }
  std::vector<Descriptor> out;
  out.reserve(it->size());
  for (std::size_t i = 0; i < it->size(); ++i) {
    CTRUST_ASSIGN_OR_RETURN(
        Descriptor d, parse_descriptor((*it)[i], what + " " + key + "[" + std::to_string(i) + "]"));
    out.push_back(std::move(d));
  }
  return out;
}

std::string blob_path(const crypto::Digest& d) {
  return "blobs/" + std::string(crypto::hash_name(d.alg)) + "/" + d.hex();
}

// Opens a blob beneath the layout (no symlinks) and checks that its size is the
// descriptor's.
Result<UniqueFd> open_blob(int layout_fd, const Descriptor& d) {
  CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, open_beneath(layout_fd, blob_path(d.digest), O_RDONLY));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return errno_error("cannot stat blob " + d.digest_string(), errno);
  if (!S_ISREG(st.st_mode)) {
    return Error(Errc::kFormat, "blob " + d.digest_string() + " is not a regular file");
  }
  if (static_cast<std::uint64_t>(st.st_size) != d.size) {
    return Error(Errc::kFormat, "blob " + d.digest_string() + " has " + std::to_string(st.st_size) +
                                    " bytes, its descriptor says " + std::to_string(d.size));
  }
  return fd;
}

// Reads a blob through an fd, hashing and counting every byte handed out, so that what
// is parsed is exactly what is verified; verify() reads the rest and compares.
class BlobReader {
 public:
  static Result<BlobReader> open(int layout_fd, const Descriptor& d) {
    CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, open_blob(layout_fd, d));
    CTRUST_ASSIGN_OR_RETURN(crypto::Hasher h, crypto::Hasher::create(d.digest.alg));
    return BlobReader(d, std::move(fd), std::move(h));
  }

  Result<std::size_t> read(std::span<std::uint8_t> buf, const ProgressFn& progress) {
    // One byte more than the descriptor allows is enough to see that the blob grew.
    std::size_t want = static_cast<std::size_t>(
        std::min<std::uint64_t>(buf.size(), desc_.size - std::min(desc_.size, done_) + 1));
    ssize_t n;
    do {
      n = ::read(fd_.get(), buf.data(), want);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno_error("cannot read blob " + desc_.digest_string(), errno);
    auto got = static_cast<std::size_t>(n);
    done_ += got;
    if (done_ > desc_.size) {
      return Error(Errc::kFormat, "blob " + desc_.digest_string() +
                                      " is larger than its descriptor says (" +
                                      std::to_string(desc_.size) + " bytes)");
    }
    CTRUST_TRY(hasher_.update(ByteView(buf.data(), got)));
    if (progress && got > 0) progress(got);
    return got;
  }

  Result<void> verify(const ProgressFn& progress) {
    Bytes buf(kReadChunk);
    for (;;) {
      CTRUST_ASSIGN_OR_RETURN(std::size_t n, read(buf, progress));
      if (n == 0) break;
    }
    if (done_ != desc_.size) {
      return Error(Errc::kFormat, "blob " + desc_.digest_string() + " has " +
                                      std::to_string(done_) + " bytes, its descriptor says " +
                                      std::to_string(desc_.size));
    }
    CTRUST_ASSIGN_OR_RETURN(crypto::Digest got, hasher_.finish());
    if (!(got == desc_.digest)) {
      return Error(Errc::kFormat, "blob " + desc_.digest_string() +
                                      " does not match its digest (the layout is damaged or "
                                      "was tampered with)");
    }
    return ok_result();
  }

 private:
  BlobReader(Descriptor d, UniqueFd fd, crypto::Hasher h)
      : desc_(std::move(d)), fd_(std::move(fd)), hasher_(std::move(h)) {}
  Descriptor desc_;
  UniqueFd fd_;
  crypto::Hasher hasher_;
  std::uint64_t done_ = 0;
};

// A small JSON blob, whole and verified.
Result<std::string> read_json_blob(int layout_fd, const Descriptor& d) {
  if (d.size > kMaxJsonBlob) {
    return Error(Errc::kLimit, "blob " + d.digest_string() + " (" + shown(d.media_type) +
                                   ") is larger than " + std::to_string(kMaxJsonBlob) + " bytes");
  }
  CTRUST_ASSIGN_OR_RETURN(BlobReader r, BlobReader::open(layout_fd, d));
  std::string text(static_cast<std::size_t>(d.size), '\0');
  std::size_t done = 0;
  while (done < text.size()) {
    auto* p = reinterpret_cast<std::uint8_t*>(text.data()) + done;
    CTRUST_ASSIGN_OR_RETURN(std::size_t n, r.read({p, text.size() - done}, {}));
    if (n == 0) break;
    done += n;
  }
  CTRUST_TRY(r.verify({}));
  return text;
}

Result<std::string> read_layout_file(int layout_fd, const std::string& name, std::size_t max) {
  CTRUST_ASSIGN_OR_RETURN(UniqueFd fd, open_beneath(layout_fd, name, O_RDONLY));
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error("cannot read " + name, errno);
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > max) {
      return Error(Errc::kLimit, name + " is larger than " + std::to_string(max) + " bytes");
    }
  }
  return text;
}

bool is_manifest_type(std::string_view t) {
  return t == kOciManifestType || t == kDockerManifestType;
}
bool is_index_type(std::string_view t) { return t == kOciIndexType || t == kDockerListType; }

std::string tag_list(const std::vector<Descriptor>& descs) {
  std::string out;
  for (const Descriptor& d : descs) {
    auto it = d.annotations.find(std::string(kOciRefName));
    if (!out.empty()) out += ", ";
    out += it != d.annotations.end() ? shown(it->second) : "(untagged " + d.digest_string() + ")";
  }
  return out.empty() ? "none" : out;
}

// Follows nested indexes down to one image manifest; where an index offers several, the
// linux/amd64 one is taken.
Result<Descriptor> resolve_manifest(int layout_fd, const Descriptor& d, int depth) {
  if (is_manifest_type(d.media_type)) return d;
  if (!is_index_type(d.media_type)) {
    return Error(Errc::kUnsupported, "descriptor " + d.digest_string() + " has media type " +
                                         shown(d.media_type) + ", not an image manifest or index");
  }
  if (depth >= kMaxIndexDepth) {
    return Error(Errc::kLimit,
                 "image indexes nested deeper than " + std::to_string(kMaxIndexDepth));
  }
  CTRUST_ASSIGN_OR_RETURN(std::string text, read_json_blob(layout_fd, d));
  auto descs = parse_oci_index(text);
  if (!descs) return std::move(descs).error().with_context("image index " + d.digest_string());
  if (descs->size() == 1) return resolve_manifest(layout_fd, descs->front(), depth + 1);
  std::vector<const Descriptor*> matches;
  std::string platforms;
  for (const Descriptor& c : *descs) {
    if (c.os == "linux" && c.architecture == "amd64") matches.push_back(&c);
    if (!platforms.empty()) platforms += ", ";
    platforms += shown(c.os.empty() ? "?" : c.os) + "/" +
                 shown(c.architecture.empty() ? "?" : c.architecture);
    if (!c.variant.empty()) platforms += "/" + shown(c.variant);
  }
  if (matches.size() != 1) {
    return Error(Errc::kUnsupported, "image index " + d.digest_string() + " offers " +
                                         std::to_string(descs->size()) + " images and " +
                                         (matches.empty() ? "none" : "more than one") +
                                         " for linux/amd64 (platforms: " + platforms + ")");
  }
  return resolve_manifest(layout_fd, *matches.front(), depth + 1);
}

Result<Descriptor> select_image(int layout_fd, const std::string& dir,
                                const std::optional<std::string>& tag) {
  CTRUST_ASSIGN_OR_RETURN(std::string layout,
                          read_layout_file(layout_fd, "oci-layout", kMaxSmallFile));
  CTRUST_ASSIGN_OR_RETURN(Json lj, parse_json(layout, "oci-layout"));
  CTRUST_ASSIGN_OR_RETURN(std::string version,
                          string_field(lj, "imageLayoutVersion", true, "oci-layout"));
  if (version != "1.0.0") {
    return Error(Errc::kUnsupported,
                 "oci-layout has imageLayoutVersion " + shown(version) + ", not 1.0.0");
  }
  CTRUST_ASSIGN_OR_RETURN(std::string index,
                          read_layout_file(layout_fd, "index.json", kMaxJsonBlob));
  auto descs = parse_oci_index(index);
  if (!descs) return std::move(descs).error().with_context("index.json");
  const Descriptor* chosen = nullptr;
  if (tag) {
    for (const Descriptor& d : *descs) {
      auto it = d.annotations.find(std::string(kOciRefName));
      if (it == d.annotations.end() || it->second != *tag) continue;
      if (chosen != nullptr && !(chosen->digest == d.digest)) {
        return Error(Errc::kFormat, "the tag " + shown(*tag) + " names two images in " + dir);
      }
      chosen = &d;
    }
    if (chosen == nullptr) {
      return Error(Errc::kNotFound,
                   "no image tagged " + shown(*tag) + " in " + dir + "; tags: " + tag_list(*descs));
    }
  } else {
    if (descs->size() != 1) {
      return Error(Errc::kInvalidArgument,
                   dir + " holds " + std::to_string(descs->size()) +
                       " images; name one as oci:DIR:TAG (tags: " + tag_list(*descs) + ")");
    }
    chosen = &descs->front();
  }
  return resolve_manifest(layout_fd, *chosen, 0);
}

struct LayerJob {
  Descriptor desc;
  LayerCompression compression;
  std::optional<Result<Layer>> result;
};

Result<Layer> read_one_layer(int layout_fd, const LayerJob& job, const LayerReadOptions& lo,
                             const ManifestOptions& options) {
  CTRUST_ASSIGN_OR_RETURN(BlobReader blob, BlobReader::open(layout_fd, job.desc));
  LayerSource source = [&](std::span<std::uint8_t> buf) {
    return blob.read(buf, options.progress);
  };
  LayerReadOptions o = lo;
  o.compression = job.compression;
  auto layer = read_layer(source, o);
  // A damaged blob explains any parse error better than the parse error does.
  CTRUST_TRY(blob.verify(options.progress));
  return layer;
}

}  // namespace

std::string Descriptor::digest_string() const {
  return std::string(crypto::hash_name(digest.alg)) + ":" + digest.hex();
}

Result<crypto::Digest> parse_oci_digest(std::string_view text) {
  std::size_t colon = text.find(':');
  std::string_view alg = colon == std::string_view::npos ? "" : text.substr(0, colon);
  std::string_view hex = colon == std::string_view::npos ? "" : text.substr(colon + 1);
  crypto::HashAlg a;
  if (alg == "sha256") {
    a = crypto::HashAlg::kSha256;
  } else if (alg == "sha512") {
    a = crypto::HashAlg::kSha512;
  } else {
    return Error(Errc::kUnsupported, "digest " + shown(text) + " is not sha256:HEX or sha512:HEX");
  }
  bool lower_hex = std::all_of(hex.begin(), hex.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
  if (!lower_hex || hex.size() != 2 * crypto::digest_size(a)) {
    return Error(Errc::kFormat, "digest " + shown(text) + " is not " + std::string(alg) + ":" +
                                    std::to_string(2 * crypto::digest_size(a)) +
                                    " lowercase hex digits");
  }
  return crypto::Digest::from_hex(a, hex);
}

Result<std::vector<Descriptor>> parse_oci_index(std::string_view json) {
  try {
    CTRUST_ASSIGN_OR_RETURN(Json j, parse_json(json, "the image index"));
    CTRUST_TRY(check_schema_version(j, "the image index"));
    return parse_descriptors(j, "manifests", "the image index");
  } catch (const Json::exception& e) {
    return Error(Errc::kFormat, std::string("the image index: ") + e.what());
  }
}

Result<ImageManifest> parse_oci_manifest(std::string_view json) {
  try {
    CTRUST_ASSIGN_OR_RETURN(Json j, parse_json(json, "the image manifest"));
    CTRUST_TRY(check_schema_version(j, "the image manifest"));
    CTRUST_ASSIGN_OR_RETURN(std::string type,
                            string_field(j, "mediaType", false, "the image manifest"));
    if (!type.empty() && !is_manifest_type(type)) {
      return Error(Errc::kUnsupported, "the image manifest has media type " + shown(type));
    }
    ImageManifest m;
    auto config = j.find("config");
    if (config == j.end()) return Error(Errc::kFormat, "the image manifest has no \"config\"");
    CTRUST_ASSIGN_OR_RETURN(m.config, parse_descriptor(*config, "the image manifest's config"));
    CTRUST_ASSIGN_OR_RETURN(m.layers, parse_descriptors(j, "layers", "the image manifest"));
    return m;
  } catch (const Json::exception& e) {
    return Error(Errc::kFormat, std::string("the image manifest: ") + e.what());
  }
}

Result<LayerCompression> layer_compression(std::string_view media_type) {
  if (media_type == "application/vnd.oci.image.layer.v1.tar") return LayerCompression::kNone;
  if (media_type == "application/vnd.oci.image.layer.v1.tar+gzip" ||
      media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip") {
    return LayerCompression::kGzip;
  }
  if (media_type == "application/vnd.oci.image.layer.v1.tar+zstd") return LayerCompression::kZstd;
  if (media_type.starts_with("application/vnd.oci.image.layer.nondistributable.") ||
      media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") {
    return Error(Errc::kUnsupported, "non-distributable (foreign) layer type " + shown(media_type) +
                                         ": its content is not in the layout");
  }
  return Error(Errc::kUnsupported, "unsupported layer media type " + shown(media_type));
}

Result<Manifest> manifest_from_oci_layout(const std::string& dir,
                                          const std::optional<std::string>& tag,
                                          const ManifestOptions& options) {
  UniqueFd layout_fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!layout_fd) return errno_error("cannot open OCI layout " + dir, errno);
  auto fd = layout_fd.get();
  CTRUST_ASSIGN_OR_RETURN(Descriptor chosen, select_image(fd, dir, tag));
  CTRUST_ASSIGN_OR_RETURN(std::string text, read_json_blob(fd, chosen));
  auto parsed = parse_oci_manifest(text);
  if (!parsed) return std::move(parsed).error().with_context("manifest " + chosen.digest_string());
  ImageManifest& im = *parsed;
  // The config is not needed for the root filesystem, but a layout with a damaged blob is
  // refused whole.
  CTRUST_TRY(read_json_blob(fd, im.config));

  std::vector<LayerJob> jobs;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < im.layers.size(); ++i) {
    auto c = layer_compression(im.layers[i].media_type);
    if (!c) return std::move(c).error().with_context("layer " + std::to_string(i));
    total += im.layers[i].size;
    jobs.push_back({im.layers[i], *c, std::nullopt});
  }
  if (options.on_walked) options.on_walked(total);

  // Each layer is read by one pipeline (a decompressing reader and a hashing thread);
  // several pipelines share the cores, largest layers first.
  unsigned threads =
      options.threads != 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  LayerReadOptions lo;
  lo.xattrs = options.xattrs;
  lo.pipeline = threads > 1;
  lo.content_digest = options.content_digest;
  std::size_t pipelines = std::min<std::size_t>(std::max(1u, threads / 2), jobs.size());
  std::vector<std::size_t> order(jobs.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return jobs[a].desc.size > jobs[b].desc.size; });
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  auto worker = [&] {
    for (;;) {
      std::size_t k = next.fetch_add(1);
      if (k >= order.size() || failed.load()) return;
      LayerJob& job = jobs[order[k]];
      job.result = read_one_layer(fd, job, lo, options);
      if (!job.result->ok()) failed = true;
    }
  };
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < pipelines; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();

  LayerTree tree;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    std::string where = "layer " + std::to_string(i) + " (" + jobs[i].desc.digest_string() + ")";
    if (!jobs[i].result) continue;  // not read: an earlier failure stopped the pool
    if (!jobs[i].result->ok()) return std::move(*jobs[i].result).error().with_context(where);
  }
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    std::string where = "layer " + std::to_string(i) + " (" + jobs[i].desc.digest_string() + ")";
    auto r = tree.apply(std::move(jobs[i].result->value()));
    if (!r) return std::move(r).error().with_context(where);
    jobs[i].result.reset();  // free the records as soon as they are applied
  }
  return std::move(tree).manifest();
}

}  // namespace ctrust::image
