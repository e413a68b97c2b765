// ctrust log: show, replay, verify, convert and append IMA measurement lists.
#include <fcntl.h>
#include <linux/openat2.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>

#include "agent/config.h"
#include "agent/control.h"
#include "cmd/ctrust/cli.h"
#include "crypto/digest.h"
#include "imalog/ascii.h"
#include "imalog/binary.h"
#include "imalog/log_writer.h"
#include "imalog/replay.h"
#include "policy/check.h"
#include "policy/policy.h"
#include "util/file.h"
#include "util/text.h"

namespace ctrust::cli {
namespace {

using imalog::Entry;
using imalog::EntrySource;

// Options every command that reads a log shares.
struct InputArgs {
  std::string path;
  std::string form = "auto";
  std::string header_alg;
  bool big_endian = false;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--input-form", form, "Input form: auto (default), binary, ascii")
        ->check(CLI::IsMember({"auto", "binary", "ascii"}));
    cmd->add_option("--header-alg", header_alg,
                    "Binary input: algorithm of the header digests (sha1 for the classic "
                    "file, sha256 for *_sha256 files); detected if not given");
    cmd->add_flag("--big-endian", big_endian,
                  "Binary input is in big-endian host order (a big-endian kernel without "
                  "ima_canonical_fmt)");
    auto* file = cmd->add_option("log", path, "Measurement list file ('-' for standard input)");
    cmd->add_option("--container", container,
                    "The log of a container that ctrustd measures (or `host` for the host "
                    "log), instead of a file")
        ->excludes(file);
    cmd->add_option("--socket", socket, "ctrustd's control socket")->capture_default_str();
  }

  // The file to read: LOG, or the one ctrustd keeps for --container.
  Result<void> resolve() {
    if (container.empty()) {
      if (path.empty()) return Error(Errc::kInvalidArgument, "name a LOG file or --container ID");
      return ok_result();
    }
    CTRUST_ASSIGN_OR_RETURN(nlohmann::json answer,
                            agent::control_call(socket, {{"op", "log"}, {"id", container}}, 10000));
    path = answer.value("path", "");
    if (path.empty()) return Error(Errc::kFormat, "ctrustd gave no log path");
    if (answer.contains("pcr") && answer["pcr"].is_number_unsigned() &&
        answer["pcr"].get<unsigned>() < 24) {
      log_pcr = answer["pcr"].get<unsigned>();
    }
    return ok_result();
  }
  std::string container;
  std::optional<unsigned> log_pcr;  // with --container: the PCR ctrustd extends for that log
  std::string socket = agent::kDefaultSocket;

  Result<imalog::OpenOptions> options() const {
    imalog::OpenOptions o;
    o.form = form == "binary"  ? imalog::LogForm::kBinary
             : form == "ascii" ? imalog::LogForm::kAscii
                               : imalog::LogForm::kAuto;
    if (!header_alg.empty()) {
      auto alg = crypto::parse_hash_alg(header_alg);
      if (!alg) return Error(Errc::kInvalidArgument, "unknown --header-alg '" + header_alg + "'");
      o.header_alg = alg;
    }
    if (big_endian) o.order = imalog::ByteOrder::kBig;
    return o;
  }

  Result<std::unique_ptr<EntrySource>> open() const {
    CTRUST_ASSIGN_OR_RETURN(imalog::OpenOptions o, options());
    auto src = imalog::open_log(path, o);
    if (!src) return std::move(src).error().with_context(path);
    if (const auto* bin = dynamic_cast<const imalog::BinaryReader*>(src->get())) {
      spdlog::debug("{}: binary form, {} header digests, {}-endian", path,
                    crypto::hash_name(bin->format().header_alg),
                    bin->format().order == imalog::ByteOrder::kBig ? "big" : "little");
    } else {
      spdlog::debug("{}: ASCII form", path);
    }
    return src;
  }

  std::uint64_t file_size() const {
    struct stat st {};
    return path != "-" && ::stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size)
                                                         : 0;
  }
};

// Reads every entry, calling `fn` on each; errors name the file.
Result<void> for_each_entry(const InputArgs& in,
                            const std::function<Result<void>(const Entry&)>& fn) {
  CTRUST_ASSIGN_OR_RETURN(std::unique_ptr<EntrySource> src, in.open());
  Progress progress("reading", in.file_size());
  Entry e;
  std::uint64_t last = 0;
  for (;;) {
    auto more = src->next(e);
    if (!more) {
      progress.finish();
      return std::move(more).error().with_context(in.path);
    }
    if (!*more) break;
    if (auto r = fn(e); !r) {
      progress.finish();
      return std::move(r).error().with_context(in.path + ": entry " + std::to_string(src->count()));
    }
    progress.advance(src->offset() - last);
    last = src->offset();
  }
  return ok_result();
}

std::string digest_text(std::string_view alg, ByteView bytes) {
  std::string s(alg);
  s += ':';
  append_hex(s, bytes);
  return s;
}

Result<nlohmann::json> entry_json(const Entry& e, std::uint64_t index) {
  CTRUST_ASSIGN_OR_RETURN(imalog::Fields f, imalog::parse_fields(e));
  nlohmann::json j = {{"index", index},
                      {"pcr", e.pcr},
                      {"template_digest", digest_text(crypto::hash_name(e.template_digest.alg),
                                                      e.template_digest.view())},
                      {"template", e.template_name},
                      {"violation", e.is_violation()}};
  if (!f.file_digest.empty()) j["file_digest"] = digest_text(f.digest_alg, f.file_digest);
  if (!f.digest_type.empty()) j["digest_type"] = f.digest_type;
  j["name"] = f.name;
  if (!f.sig.empty()) j["sig"] = to_hex(f.sig);
  if (!f.buf.empty()) j["buf"] = to_hex(f.buf);
  if (!f.modsig.empty()) j["modsig"] = to_hex(f.modsig);
  if (!f.dmodsig.empty()) j["d_modsig"] = digest_text(f.dmodsig_alg, f.dmodsig);
  return j;
}

// ---- show ------------------------------------------------------------------------------

struct ShowArgs {
  InputArgs in;
  std::string format = "ascii";
};

int run_show(const ShowArgs& args) {
  const bool json = args.format == "json";
  std::uint64_t index = 0;
  std::string line;
  if (json) std::fputs("[", stdout);
  auto r = for_each_entry(args.in, [&](const Entry& e) -> Result<void> {
    ++index;
    if (json) {
      CTRUST_ASSIGN_OR_RETURN(nlohmann::json j, entry_json(e, index));
      std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      std::fprintf(stdout, "%s\n  %s", index == 1 ? "" : ",", text.c_str());
      return ok_result();
    }
    line.clear();
    CTRUST_TRY(imalog::append_ascii(line, e));
    std::fwrite(line.data(), 1, line.size(), stdout);
    return ok_result();
  });
  if (json) std::fputs(index == 0 ? "]\n" : "\n]\n", stdout);
  if (!r) return report_error(r.error());
  return kExitOk;
}

// ---- replay ----------------------------------------------------------------------------

struct ReplayArgs {
  InputArgs in;
  std::vector<std::string> banks;
  bool json = false;
};

Result<std::vector<crypto::HashAlg>> parse_banks(const std::vector<std::string>& names) {
  std::vector<crypto::HashAlg> banks;
  for (const auto& n : names) {
    auto alg = crypto::parse_hash_alg(n);
    if (!alg) return Error(Errc::kInvalidArgument, "unknown bank '" + n + "'");
    if (std::find(banks.begin(), banks.end(), *alg) == banks.end()) banks.push_back(*alg);
  }
  if (banks.empty()) banks.push_back(crypto::HashAlg::kSha256);
  return banks;
}

int run_replay(const ReplayArgs& args) {
  auto banks = parse_banks(args.banks);
  if (!banks) return report_error(banks.error());
  imalog::Replayer replayer(*banks);
  std::uint64_t violations = 0;
  std::uint64_t bad = 0;
  std::uint64_t index = 0;
  auto r = for_each_entry(args.in, [&](const Entry& e) -> Result<void> {
    ++index;
    CTRUST_ASSIGN_OR_RETURN(imalog::EntryStatus st, replayer.add(e));
    if (st == imalog::EntryStatus::kViolation) ++violations;
    if (st == imalog::EntryStatus::kBadTemplateDigest) {
      if (bad == 0) {
        std::fprintf(stderr,
                     "ctrust: warning: entry %llu: logged template digest does not match "
                     "its data\n",
                     static_cast<unsigned long long>(index));
      }
      ++bad;
    }
    return ok_result();
  });
  if (!r) return report_error(r.error());
  if (args.json) {
    nlohmann::json j = {
        {"entries", index}, {"violations", violations}, {"bad_template_digests", bad}};
    for (const auto& b : replayer.banks()) {
      nlohmann::json pcrs = nlohmann::json::object();
      for (std::size_t i = 0; i < imalog::kNumPcrs; ++i) {
        if (b.extended & (1u << i)) pcrs[std::to_string(i)] = b.values[i].hex();
      }
      j["banks"][std::string(crypto::hash_name(b.alg))] = pcrs;
    }
    print_json(j);
  } else {
    for (const auto& b : replayer.banks()) {
      if (replayer.banks().size() > 1)
        std::printf("# bank: %s\n", std::string(crypto::hash_name(b.alg)).c_str());
      std::fputs(imalog::format_pcr_lines(b).c_str(), stdout);
    }
  }
  if (bad > 0) {
    std::fprintf(stderr,
                 "ctrust: warning: %llu entries have a template digest that does not "
                 "match their data; `ctrust log verify` rejects this log\n",
                 static_cast<unsigned long long>(bad));
  }
  return kExitOk;
}

// ---- verify ----------------------------------------------------------------------------

struct VerifyArgs {
  InputArgs in;
  std::vector<std::string> pcr_files;
  std::vector<unsigned> log_pcrs;  // the PCRs the log is the record of (default 10)
  bool json = false;
};

Result<imalog::ExpectedPcrs> load_expected(const std::vector<std::string>& specs) {
  imalog::ExpectedPcrs all;
  for (const std::string& spec : specs) {
    std::optional<crypto::HashAlg> bank;
    std::string path = spec;
    std::size_t comma = spec.find(',');
    if (comma != std::string::npos) {
      bank = crypto::parse_hash_alg(spec.substr(0, comma));
      if (!bank) return Error(Errc::kInvalidArgument, "--pcrs " + spec + ": unknown bank");
      path = spec.substr(comma + 1);
    }
    CTRUST_ASSIGN_OR_RETURN(Bytes text, read_file(path, 1 << 20));
    auto parsed = imalog::parse_pcr_file(
        std::string_view(reinterpret_cast<const char*>(text.data()), text.size()), bank);
    if (!parsed) return std::move(parsed).error().with_context(path);
    for (auto& [alg, values] : *parsed) {
      for (auto& [idx, d] : values) {
        if (all[alg].count(idx) != 0 && !(all[alg][idx] == d)) {
          return Error(Errc::kInvalidArgument, "PCR files disagree on " +
                                                   std::string(crypto::hash_name(alg)) + " PCR " +
                                                   std::to_string(idx));
        }
        all[alg][idx] = d;
      }
    }
  }
  return all;
}

int run_verify(const VerifyArgs& args) {
  auto expected = load_expected(args.pcr_files);
  if (!expected) return report_error(expected.error());
  Progress progress("verifying", args.in.file_size());
  auto started = std::chrono::steady_clock::now();
  // --log-pcr, else the PCR ctrustd extends for a --container log, else IMA's.
  std::uint32_t accounted =
      args.log_pcrs.empty() ? (args.in.log_pcr ? 1u << *args.in.log_pcr : imalog::kImaPcrMask) : 0;
  for (unsigned p : args.log_pcrs) accounted |= 1u << p;
  auto report =
      imalog::verify_log([&] { return args.in.open(); }, *expected,
                         [&](std::uint64_t n) { progress.advance(n); }, args.in.path, accounted);
  progress.finish();
  if (!report) return report_error(report.error());
  const imalog::VerifyReport& rep = *report;
  spdlog::info("{}: {} entries replayed into {} bank(s) in {:.3f} s", args.in.path, rep.entries,
               rep.replayed.size(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());

  auto pcr_name = [](const imalog::PcrMismatch& m) {
    return std::string(crypto::hash_name(m.bank)) + " PCR-" + (m.pcr < 10 ? "0" : "") +
           std::to_string(m.pcr);
  };
  if (args.json) {
    nlohmann::json j = {{"ok", rep.ok()},
                        {"entries", rep.entries},
                        {"violations", rep.violations},
                        {"violation_entries", rep.violation_entries},
                        {"bad_template_digests", rep.bad_template_digests},
                        {"bad_template_entries", rep.bad_template_entries},
                        {"mismatches", nlohmann::json::array()},
                        {"sha1_padded_banks", nlohmann::json::array()}};
    for (const auto& m : rep.mismatches) {
      j["mismatches"].push_back(
          {{"bank", crypto::hash_name(m.bank)},
           {"pcr", m.pcr},
           {"replayed", m.replayed.hex()},
           {"expected", m.expected ? nlohmann::json(m.expected->hex()) : nlohmann::json(nullptr)},
           {"never_extended", m.never_extended}});
    }
    for (auto b : rep.sha1_padded_banks) j["sha1_padded_banks"].push_back(crypto::hash_name(b));
    print_json(j);
  } else {
    std::printf("entries: %llu\n", static_cast<unsigned long long>(rep.entries));
    if (rep.violations > 0) {
      std::string list;
      for (auto idx : rep.violation_entries) list += " " + std::to_string(idx);
      std::printf("violations: %llu (entries%s%s)\n",
                  static_cast<unsigned long long>(rep.violations), list.c_str(),
                  rep.violations > rep.violation_entries.size() ? " ..." : "");
    }
    for (auto idx : rep.bad_template_entries) {
      std::printf("FAILED: entry %llu: logged template digest does not match its data\n",
                  static_cast<unsigned long long>(idx));
    }
    if (rep.bad_template_digests > rep.bad_template_entries.size()) {
      std::printf("FAILED: ... %llu entries in all with a bad template digest\n",
                  static_cast<unsigned long long>(rep.bad_template_digests));
    }
    for (const auto& m : rep.mismatches) {
      if (m.never_extended) {
        std::printf(
            "FAILED: %s: the log never extends it, but it is %s, not all zeros (entries "
            "are missing, or the log is not this PCR's)\n",
            pcr_name(m).c_str(), m.expected->hex().c_str());
      } else if (m.expected) {
        std::printf("FAILED: %s: replayed %s, expected %s\n", pcr_name(m).c_str(),
                    m.replayed.hex().c_str(), m.expected->hex().c_str());
      } else {
        std::printf("FAILED: %s: extended by the log but not given in any PCR file\n",
                    pcr_name(m).c_str());
      }
    }
    for (auto b : rep.sha1_padded_banks) {
      std::printf(
          "note: %s matched only with SHA-1 template digests zero-padded (the kernel "
          "could not compute this bank)\n",
          std::string(crypto::hash_name(b)).c_str());
    }
    for (const auto& bank : rep.replayed) {
      for (std::uint32_t i = 0; i < imalog::kNumPcrs; ++i) {
        if ((bank.extended & (1u << i)) == 0) continue;
        bool bad = std::any_of(rep.mismatches.begin(), rep.mismatches.end(),
                               [&](const auto& m) { return m.bank == bank.alg && m.pcr == i; });
        if (!bad) {
          std::printf("ok: %s PCR-%02u matches\n", std::string(crypto::hash_name(bank.alg)).c_str(),
                      i);
        }
      }
    }
    std::printf("%s\n", rep.ok() ? "log verified" : "log verification FAILED");
  }
  return rep.ok() ? kExitOk : kExitRejected;
}

// ---- convert ---------------------------------------------------------------------------

struct ConvertArgs {
  InputArgs in;
  std::string to;
  std::string bank;
  std::string out;
};

int run_convert(const ConvertArgs& args) {
  std::optional<crypto::HashAlg> bank;
  if (!args.bank.empty()) {
    bank = crypto::parse_hash_alg(args.bank);
    if (!bank) return report_error("unknown --bank '" + args.bank + "'");
  }
  const bool to_ascii = args.to == "ascii";
  // OUT appears whole or not at all; standard output is written as it goes.
  std::optional<AtomicFile> file;
  if (args.out != "-") {
    auto created = AtomicFile::create(args.out, 0644);
    if (!created) return report_error(created.error());
    file.emplace(std::move(*created));
  }
  const int out_fd = file ? file->fd() : STDOUT_FILENO;
  Bytes bin;
  std::string text;
  auto flush = [&]() -> Result<void> {
    CTRUST_TRY(write_all(out_fd, bin));
    CTRUST_TRY(write_all(out_fd, as_bytes(text)));
    bin.clear();
    text.clear();
    return ok_result();
  };
  Entry converted;
  auto r = for_each_entry(args.in, [&](const Entry& e) -> Result<void> {
    const Entry* out = &e;
    if (bank && *bank != e.template_digest.alg) {
      // A new header digest is computed from the data, so first make sure the old one was
      // right: conversion must never launder a tampered record into a valid-looking one.
      if (!e.is_violation()) {
        CTRUST_ASSIGN_OR_RETURN(crypto::Digest old,
                                imalog::template_digest(e, e.template_digest.alg));
        if (!(old == e.template_digest)) {
          return Error(Errc::kFormat,
                       "template digest does not match its data; refusing to "
                       "convert a tampered record");
        }
      }
      converted = e;
      if (e.is_violation()) {
        converted.template_digest = crypto::Digest::zero(*bank);
      } else {
        CTRUST_ASSIGN_OR_RETURN(converted.template_digest, imalog::template_digest(e, *bank));
      }
      out = &converted;
    }
    if (to_ascii) {
      CTRUST_TRY(imalog::append_ascii(text, *out));
    } else {
      CTRUST_TRY(imalog::append_binary(bin, *out));
    }
    if (bin.size() + text.size() > (1u << 20)) CTRUST_TRY(flush());
    return ok_result();
  });
  if (r) r = flush();
  if (r && file) r = file->commit();
  if (!r) return report_error(r.error());
  return kExitOk;
}

// ---- append ----------------------------------------------------------------------------

struct AppendArgs {
  std::string log;
  std::string template_name = "ima-ng";
  std::string file_alg = "sha256";
  std::string header_alg = "sha1";
  std::uint32_t pcr = 10;
  bool violation = false;
  bool repair = false;
  bool json = false;
  std::string root;
  std::vector<std::string> files;
};

Result<UniqueFd> open_in_root(const std::string& root, const std::string& file) {
  if (file.empty() || file[0] != '/') {
    return Error(Errc::kInvalidArgument,
                 "with --root, files are absolute paths inside the root: " + file);
  }
  UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return errno_error("cannot open --root " + root, errno);
  struct open_how how {};
  how.flags = O_RDONLY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd;
  do {
    fd = ::syscall(SYS_openat2, root_fd.get(), file.c_str() + 1, &how, sizeof(how));
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error("cannot open " + file + " in " + root, errno);
  return UniqueFd(static_cast<int>(fd));
}

int run_append(const AppendArgs& args) {
  auto file_alg = crypto::parse_hash_alg(args.file_alg);
  auto header_alg = crypto::parse_hash_alg(args.header_alg);
  if (!file_alg) return report_error("unknown --file-alg '" + args.file_alg + "'");
  if (!header_alg) return report_error("unknown --header-alg '" + args.header_alg + "'");
  const imalog::TemplateDesc* desc = imalog::find_template(args.template_name);
  if (desc == nullptr) return report_error("unknown template '" + args.template_name + "'");
  if (desc->legacy) file_alg = crypto::HashAlg::kSha1;

  std::vector<Entry> entries;
  for (const std::string& file : args.files) {
    Result<Entry> e = Error(Errc::kInternal, "unset");
    if (args.violation) {
      e = imalog::make_violation(args.template_name, args.pcr, file, *file_alg, *header_alg);
    } else {
      imalog::MeasurementSpec spec;
      spec.template_name = args.template_name;
      spec.pcr = args.pcr;
      spec.name = file;
      // With --root, FILE is a path inside that tree (as a container sees it), resolved
      // as if the tree were "/" (symlinks and ".." cannot leave it), and logged as such.
      auto fd = args.root.empty() ? open_read(file) : open_in_root(args.root, file);
      if (!fd) return report_error(fd.error());
      if (args.template_name == "ima-buf") {
        std::string self = "/proc/self/fd/" + std::to_string(fd->get());
        auto content = read_file(self, imalog::kMaxTemplateDataLen / 2);
        if (!content) return report_error(std::move(content).error().with_context(file));
        spec.buf = std::move(*content);
        auto d = crypto::digest_bytes(*file_alg, spec.buf);
        if (!d) return report_error(d.error());
        spec.file_digest = *d;
      } else {
        auto d = crypto::digest_fd(*file_alg, fd->get());
        if (!d) return report_error(std::move(d).error().with_context(file));
        spec.file_digest = *d;
      }
      e = imalog::make_entry(spec, *header_alg);
    }
    if (!e) return report_error(std::move(e).error().with_context(file));
    entries.push_back(std::move(*e));
  }

  imalog::LogWriterOptions opts;
  opts.header_alg = *header_alg;
  opts.tail_policy = args.repair ? imalog::TailPolicy::kTruncate : imalog::TailPolicy::kFail;
  auto writer = imalog::LogWriter::open(args.log, opts);
  if (!writer) return report_error(writer.error());
  if (writer->recovery()) {
    const auto& rec = *writer->recovery();
    std::fprintf(stderr,
                 "ctrust: warning: %s: removed a torn tail of %llu bytes after entry %llu (%s)\n",
                 args.log.c_str(), static_cast<unsigned long long>(rec.bytes_removed),
                 static_cast<unsigned long long>(rec.entries_kept), rec.reason.c_str());
  }
  if (auto r = writer->append(entries); !r) return report_error(r.error());
  if (args.json) {
    nlohmann::json j = {{"log", args.log},
                        {"appended", entries.size()},
                        {"entries", writer->entries()},
                        {"bytes", writer->size()}};
    if (writer->recovery()) {
      j["recovery"] = {{"bytes_removed", writer->recovery()->bytes_removed},
                       {"entries_kept", writer->recovery()->entries_kept},
                       {"reason", writer->recovery()->reason}};
    }
    print_json(j);
  }
  return kExitOk;
}

struct CheckArgs {
  InputArgs in;
  std::string policy;
  std::string trust;
  bool no_signature_check = false;
  bool json = false;
};

// The policy a log is judged against: verified against the trust anchors (signature,
// signer, validity now) unless the user explicitly chose not to.
Result<policy::Policy> load_checked_policy(const CheckArgs& args) {
  CTRUST_ASSIGN_OR_RETURN(policy::Policy p, policy::load_policy(args.policy));
  if (args.no_signature_check) {
    spdlog::warn("{}: signature not checked (--no-signature-check)", args.policy);
    return p;
  }
  CTRUST_ASSIGN_OR_RETURN(policy::TrustAnchors anchors, policy::load_trust_anchors(args.trust));
  CTRUST_ASSIGN_OR_RETURN(
      policy::VerifyResult v,
      policy::verify_policy(p, anchors, static_cast<std::int64_t>(std::time(nullptr))));
  if (!v.ok)
    return Error(Errc::kInvalidArgument, "policy " + args.policy + " is not trusted: " + v.reason);
  spdlog::info("{}: signed by {}", args.policy, v.signer);
  return p;
}

int run_check(const CheckArgs& args) {
  if (args.trust.empty() && !args.no_signature_check) {
    return report_error(
        "give --trust ANCHOR to verify the policy's signature (or "
        "--no-signature-check to judge against an unverified policy)");
  }
  auto p = load_checked_policy(args);
  if (!p) return report_error(p.error());
  auto compiled = policy::CompiledPolicy::compile(*p);
  if (!compiled) return report_error(compiled.error());
  auto src = args.in.open();
  if (!src) return report_error(src.error());
  auto j = policy::judge_log(**src, *compiled);
  if (!j) return report_error(std::move(j).error().with_context(args.in.path));
  if (args.json) {
    nlohmann::json violations = nlohmann::json::array();
    for (const auto& v : j->violations) {
      violations.push_back({{"index", v.index},
                            {"path", printable(v.path, 8192)},
                            {"digest", v.digest},
                            {"rule", v.rule},
                            {"reason", v.reason}});
    }
    print_json({{"log", args.in.path},
                {"policy", args.policy},
                {"conforms", j->conforms()},
                {"entries", j->entries},
                {"allowed", j->allowed},
                {"excluded", j->excluded},
                {"skipped", j->skipped},
                {"violations", violations}});
  } else {
    for (const auto& v : j->violations) {
      std::printf("entry %llu: %s %s: %s: %s\n", static_cast<unsigned long long>(v.index),
                  printable(v.path, 8192).c_str(), v.digest.empty() ? "-" : v.digest.c_str(),
                  v.rule.c_str(), v.reason.c_str());
    }
    std::printf(
        "%s: %s: %llu entries, %llu allowed, %llu excluded, %llu not files, %zu "
        "violations\n",
        args.in.path.c_str(), j->conforms() ? "conforms" : "DOES NOT CONFORM",
        static_cast<unsigned long long>(j->entries), static_cast<unsigned long long>(j->allowed),
        static_cast<unsigned long long>(j->excluded), static_cast<unsigned long long>(j->skipped),
        j->violations.size());
  }
  return j->conforms() ? kExitOk : kExitRejected;
}

// Resolves LOG or --container, then runs the command; a missing input is a usage error.
template <typename Run>
int with_input(InputArgs& in, Run run) {
  if (auto r = in.resolve(); !r) {
    int rc = report_error(r.error());
    return r.error().code() == Errc::kInvalidArgument && in.container.empty() ? kExitUsage : rc;
  }
  return run();
}

}  // namespace

void register_log_commands(CLI::App& app, Context& ctx) {
  CLI::App* log =
      app.add_subcommand("log", "Show, replay, verify, convert and append IMA measurement lists");
  log->require_subcommand(1);

  auto show = std::make_shared<ShowArgs>();
  CLI::App* c =
      log->add_subcommand("show", "Print a measurement list (binary or ASCII input, detected)");
  c->add_option("--format", show->format,
                "Output: ascii (default, as the kernel prints it) or json")
      ->check(CLI::IsMember({"ascii", "json"}));
  c->add_flag_callback(
      "--json", [show] { show->format = "json"; }, "Same as --format json");
  show->in.add_to(c);
  c->callback(
      [show, &ctx] { ctx.exit_code = with_input(show->in, [&] { return run_show(*show); }); });

  auto replay = std::make_shared<ReplayArgs>();
  c = log->add_subcommand("replay",
                          "Replay a measurement list into PCR values (PCR-NN: HEX lines, as "
                          "evmctl --pcrs reads)");
  c->add_option("--bank,-b", replay->banks,
                "PCR bank to replay: sha1, sha256 (default), sha384, "
                "sha512; repeat for several")
      ->allow_extra_args(false);  // one value each time: the LOG after it is positional
  c->add_flag("--json", replay->json, "Print JSON");
  replay->in.add_to(c);
  c->callback([replay, &ctx] {
    ctx.exit_code = with_input(replay->in, [&] { return run_replay(*replay); });
  });

  auto verify = std::make_shared<VerifyArgs>();
  c = log->add_subcommand("verify",
                          "Check a measurement list against PCR values (exit 0 only if "
                          "every PCR it extends matches in every given bank)");
  c->add_option("--pcrs", verify->pcr_files,
                "[BANK,]FILE with PCR values: PCR-NN: HEX lines or tpm2_pcrread output; repeat "
                "for several banks")
      ->required()
      ->allow_extra_args(false);
  c->add_option("--log-pcr", verify->log_pcrs,
                "A PCR this log is the record of (repeatable; default 10, IMA's, or with "
                "--container the PCR ctrustd extends for it): given in a PCR file but never "
                "extended by the log, it must be all zeros")
      ->check(CLI::Range(0u, 23u))
      ->allow_extra_args(false);
  c->add_flag("--json", verify->json, "Print JSON");
  verify->in.add_to(c);
  c->callback([verify, &ctx] {
    ctx.exit_code = with_input(verify->in, [&] { return run_verify(*verify); });
  });

  auto convert = std::make_shared<ConvertArgs>();
  auto check = std::make_shared<CheckArgs>();
  c = log->add_subcommand("check",
                          "Judge every entry of a measurement list against a policy "
                          "(exit 0: conforms, 1: violations)");
  c->add_option("--policy", check->policy, "Policy file (docs/POLICY.md)")->required();
  c->add_option("--trust", check->trust,
                "PEM file of trusted policy signer keys and/or CA certificates")
      ->allow_extra_args(false);
  c->add_flag("--no-signature-check", check->no_signature_check,
              "Judge against the policy without verifying its signature");
  c->add_flag("--json", check->json, "Print JSON");
  check->in.add_to(c);
  c->callback(
      [check, &ctx] { ctx.exit_code = with_input(check->in, [&] { return run_check(*check); }); });

  c = log->add_subcommand("convert", "Convert between the binary and ASCII forms");
  c->add_option("--to", convert->to, "Output form: binary or ascii")
      ->required()
      ->check(CLI::IsMember({"binary", "ascii"}));
  c->add_option("--bank", convert->bank,
                "Header digest bank of the output (sha1: the classic form; sha256: the *_sha256 "
                "form); default: as the input");
  convert->in.add_to(c);
  c->add_option("out", convert->out, "Output file ('-' for standard output)")->required();
  c->callback([convert, &ctx] {
    ctx.exit_code = with_input(convert->in, [&] { return run_convert(*convert); });
  });

  auto append = std::make_shared<AppendArgs>();
  c = log->add_subcommand("append",
                          "Measure files and append records to a binary log (crash safe: "
                          "durable when the command returns)");
  c->add_option("--template", append->template_name, "ima-ng (default), ima-sig, ima-buf or ima")
      ->check(CLI::IsMember({"ima-ng", "ima-sig", "ima-buf", "ima"}));
  c->add_option("--file-alg", append->file_alg, "File digest algorithm (default sha256)");
  c->add_option("--header-alg", append->header_alg,
                "Header digest algorithm of the log (default sha1: the classic form)");
  c->add_option("--pcr", append->pcr, "PCR index (default 10)")->check(CLI::Range(0, 23));
  c->add_flag("--violation", append->violation,
              "Append violation records named by the arguments instead of measuring files");
  c->add_flag("--repair", append->repair,
              "If the log ends in a torn record, cut it off (and report it) instead of failing");
  c->add_flag("--json", append->json, "Print JSON");
  c->add_option("--root", append->root,
                "Read FILES below this directory and log them by their path inside it (as a "
                "container sees them)");
  c->add_option("log", append->log, "Binary log file (created if missing)")->required();
  c->add_option("files", append->files, "Files to measure (or names, with --violation)")
      ->required();
  c->callback([append, &ctx] { ctx.exit_code = run_append(*append); });
}

}  // namespace ctrust::cli
