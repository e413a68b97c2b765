// ctrust-bench-genlog: writes a large synthetic ima-ng measurement list for benchmarks.
//
//   ctrust-bench-genlog --entries N --header-alg sha1|sha256 --out LOG
//                       [--pcrs-out [BANK,]FILE]... [--violations PERMILLE] [--seed S]
//
// The log starts with a boot_aggregate record and continues with files named as on a
// Debian system (/usr/lib/x86_64-linux-gnu/libfoo-123456.so.1, ...) with random sha256
// file digests, all in PCR 10; about 1 % of the records are violations. The output is a
// pure function of the arguments (a seeded mt19937_64, whose sequence the standard fixes),
// so every run and every machine benchmarks the same bytes. --pcrs-out writes the replayed
// PCR values of BANK (default sha256) as `PCR-NN: HEX` lines, what `ctrust log verify
// --pcrs BANK,FILE` reads; repeat it for several banks. LOG is replaced if it exists.
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/digest.h"
#include "imalog/entry.h"
#include "imalog/log_writer.h"
#include "imalog/replay.h"
#include "util/file.h"

namespace {

using ctrust::Errc;
using ctrust::Error;
using ctrust::Result;
using ctrust::crypto::Digest;
using ctrust::crypto::HashAlg;
namespace imalog = ctrust::imalog;

constexpr std::size_t kBatch = 4096;  // entries per write(2)

struct Options {
  std::uint64_t entries = 0;
  HashAlg header_alg = HashAlg::kSha1;
  std::string out;
  std::vector<std::pair<HashAlg, std::string>> pcr_outputs;
  std::uint64_t violations_permille = 10;
  std::uint64_t seed = 1;
};

constexpr std::string_view kUsage =
    "usage: ctrust-bench-genlog --entries N --header-alg sha1|sha256 --out LOG\n"
    "                           [--pcrs-out [BANK,]FILE]... [--violations PERMILLE] [--seed S]\n";

Result<std::uint64_t> parse_number(std::string_view flag, std::string_view text) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size()) {
    return Error(Errc::kInvalidArgument,
                 std::string(flag) + ": '" + std::string(text) + "' is not a non-negative integer");
  }
  return v;
}

Result<Options> parse_args(int argc, char** argv) {
  Options o;
  bool have_alg = false;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view flag = args[i];
    if (i + 1 >= args.size()) {
      return Error(Errc::kInvalidArgument, std::string(flag) + " needs a value");
    }
    std::string_view value = args[++i];
    if (flag == "--entries") {
      CTRUST_ASSIGN_OR_RETURN(o.entries, parse_number(flag, value));
    } else if (flag == "--header-alg") {
      auto alg = ctrust::crypto::parse_hash_alg(value);
      if (!alg || (*alg != HashAlg::kSha1 && *alg != HashAlg::kSha256)) {
        return Error(Errc::kInvalidArgument, "--header-alg must be sha1 or sha256");
      }
      o.header_alg = *alg;
      have_alg = true;
    } else if (flag == "--out") {
      o.out = std::string(value);
    } else if (flag == "--pcrs-out") {
      HashAlg bank = HashAlg::kSha256;
      std::string_view path = value;
      if (std::size_t comma = value.find(','); comma != std::string_view::npos) {
        auto alg = ctrust::crypto::parse_hash_alg(value.substr(0, comma));
        if (!alg) {
          return Error(Errc::kInvalidArgument,
                       "--pcrs-out: unknown bank in '" + std::string(value) + "'");
        }
        bank = *alg;
        path = value.substr(comma + 1);
      }
      o.pcr_outputs.emplace_back(bank, std::string(path));
    } else if (flag == "--violations") {
      CTRUST_ASSIGN_OR_RETURN(o.violations_permille, parse_number(flag, value));
      if (o.violations_permille > 1000) {
        return Error(Errc::kInvalidArgument, "--violations is per mille: at most 1000");
      }
    } else if (flag == "--seed") {
      CTRUST_ASSIGN_OR_RETURN(o.seed, parse_number(flag, value));
    } else {
      return Error(Errc::kInvalidArgument, "unknown option '" + std::string(flag) + "'");
    }
  }
  if (o.entries == 0) return Error(Errc::kInvalidArgument, "--entries N (N > 0) is required");
  if (!have_alg) return Error(Errc::kInvalidArgument, "--header-alg sha1|sha256 is required");
  if (o.out.empty()) return Error(Errc::kInvalidArgument, "--out LOG is required");
  return o;
}

// Library and package words, and programs, that event names are made of.
constexpr std::string_view kWords[] = {
    "ssl",   "crypto",    "systemd", "gnutls",  "z",       "lzma",    "zstd",   "selinux",
    "pcre2", "acl",       "attr",    "cap",     "dbus",    "glib",    "gcc_s",  "stdc++",
    "tss2",  "seccomp",   "bpf",     "elf",     "archive", "sqlite3", "curl",   "nghttp2",
    "idn2",  "unistring", "ffi",     "p11-kit", "tasn1",   "gmp",     "nettle", "hogweed"};
constexpr std::string_view kBins[] = {
    "bash", "ls",   "cat",    "grep",  "sed",       "awk",        "python3.11", "perl",
    "runc", "crun", "conmon", "sshd",  "systemctl", "journalctl", "ip",         "mount",
    "sh",   "env",  "tar",    "gzip",  "find",      "xargs",      "sort",       "cp",
    "mv",   "rm",   "ln",     "mkdir", "chmod",     "chown",      "id",         "ps"};

// Realistic event names. Raw mt19937_64 output only (no std distributions, whose results
// differ between standard libraries), so that the names are the same everywhere.
class NameGen {
 public:
  explicit NameGen(std::uint64_t seed) : rng_(seed) {}

  std::uint64_t next() { return rng_(); }
  std::uint64_t below(std::uint64_t n) { return rng_() % n; }

  Digest random_digest(HashAlg alg) {
    Digest d = Digest::zero(alg);
    for (std::size_t i = 0; i < d.size(); i += 8) {
      std::uint64_t v = rng_();
      for (std::size_t j = 0; j < 8 && i + j < d.size(); ++j) {
        d.bytes[i + j] = static_cast<std::uint8_t>(v >> (8 * j));
      }
    }
    return d;
  }

  std::string name() {
    const auto word = kWords[below(std::size(kWords))];
    const std::uint64_t id = below(1'000'000);
    std::string s;
    switch (below(8)) {
      case 0:
      case 1:
      case 2:
        s = "/usr/lib/x86_64-linux-gnu/lib" + std::string(word) + "-" + std::to_string(id) +
            ".so." + std::to_string(below(4));
        break;
      case 3:
        s = "/usr/bin/" + std::string(kBins[below(std::size(kBins))]);
        break;
      case 4:
        s = "/usr/lib/python3/dist-packages/" + std::string(word) + "/module_" +
            std::to_string(id) + ".py";
        break;
      case 5:
        s = "/var/lib/containers/storage/overlay/" + std::to_string(next()) + "/diff/usr/lib/lib" +
            std::string(word) + ".so." + std::to_string(below(4));
        break;
      case 6:
        s = "/etc/" + std::string(word) + "/" + std::to_string(id) + ".conf";
        break;
      default:
        s = "/usr/sbin/" + std::string(word) + "d-" + std::to_string(id);
        break;
    }
    return s;
  }

 private:
  std::mt19937_64 rng_;
};

Result<void> run(const Options& o) {
  std::error_code ec;
  std::filesystem::remove(o.out, ec);
  if (ec) return Error(Errc::kIo, "cannot remove the old " + o.out + ": " + ec.message());

  imalog::LogWriterOptions wopts;
  wopts.header_alg = o.header_alg;
  wopts.sync = false;
  CTRUST_ASSIGN_OR_RETURN(imalog::LogWriter writer, imalog::LogWriter::open(o.out, wopts));

  std::vector<HashAlg> banks;
  for (const auto& [bank, path] : o.pcr_outputs) banks.push_back(bank);
  imalog::Replayer replayer(banks);

  NameGen gen(o.seed);
  std::vector<imalog::Entry> batch;
  batch.reserve(kBatch);
  std::uint64_t violations = 0;
  for (std::uint64_t i = 0; i < o.entries; ++i) {
    Result<imalog::Entry> e = Error(Errc::kInternal, "unset");
    if (i == 0) {
      imalog::MeasurementSpec spec;
      spec.name = "boot_aggregate";
      spec.file_digest = gen.random_digest(HashAlg::kSha256);
      e = imalog::make_entry(spec, o.header_alg);
    } else if (gen.below(1000) < o.violations_permille) {
      e = imalog::make_violation("ima-ng", 10, gen.name(), HashAlg::kSha256, o.header_alg);
      ++violations;
    } else {
      imalog::MeasurementSpec spec;
      spec.name = gen.name();
      spec.file_digest = gen.random_digest(HashAlg::kSha256);
      e = imalog::make_entry(spec, o.header_alg);
    }
    if (!e) return std::move(e).error().with_context("entry " + std::to_string(i + 1));
    if (!banks.empty()) {
      auto st = replayer.add(*e);
      if (!st) {
        return std::move(st).error().with_context("replaying entry " + std::to_string(i + 1));
      }
    }
    batch.push_back(std::move(*e));
    if (batch.size() == kBatch) {
      CTRUST_TRY(writer.append(batch));
      batch.clear();
    }
  }
  if (!batch.empty()) CTRUST_TRY(writer.append(batch));
  CTRUST_TRY(writer.sync());

  for (const auto& [bank, path] : o.pcr_outputs) {
    std::string text = imalog::format_pcr_lines(*replayer.bank(bank));
    CTRUST_TRY(ctrust::write_file_atomic(path, ctrust::as_bytes(text), 0644));
  }
  std::fprintf(stderr,
               "ctrust-bench-genlog: wrote %llu entries (%llu violations, %llu bytes) to %s\n",
               static_cast<unsigned long long>(writer.entries()),
               static_cast<unsigned long long>(violations),
               static_cast<unsigned long long>(writer.size()), o.out.c_str());
  return ctrust::ok_result();
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      std::fputs(kUsage.data(), stdout);
      return 0;
    }
  }
  auto opts = parse_args(argc, argv);
  if (!opts) {
    std::fprintf(stderr, "ctrust-bench-genlog: %s\n", opts.error().message().c_str());
    std::fputs(kUsage.data(), stderr);
    return 2;
  }
  if (auto r = run(*opts); !r) {
    std::fprintf(stderr, "ctrust-bench-genlog: %s\n", r.error().message().c_str());
    return 1;
  }
  return 0;
}
