// ctrust policy: create, sign, verify, show, merge, import and export signed allowlists.
#include <spdlog/spdlog.h>

#include <ctime>
#include <iostream>

#include "cmd/ctrust/cli.h"
#include "image/manifest.h"
#include "policy/interop.h"
#include "policy/policy.h"
#include "util/file.h"
#include "util/text.h"

namespace ctrust::cli {
namespace {

using policy::Policy;

std::int64_t now_seconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

Result<void> write_output(const std::string& out, std::string_view text) {
  auto w = out == "-" ? write_all(STDOUT_FILENO, as_bytes(text))
                      : write_file_atomic(out, as_bytes(text), 0644);
  if (!w) return std::move(w).error().with_context(out);
  return ok_result();
}

std::string_view as_text(const Bytes& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// The header fields of a new policy (create, import).
struct HeaderArgs {
  std::string name;
  std::string issuer;
  std::uint64_t serial = 1;
  std::string mode = "enforce";
  std::string not_before;
  std::string not_after;
  unsigned valid_days = 365;
  std::vector<std::string> images;

  void add_to(CLI::App* c) {
    c->add_option("--name", name, "Policy name (what it is for)")->required();
    c->add_option("--issuer", issuer, "Who issues the policy (team, mail address)")->required();
    c->add_option("--serial", serial, "Serial number; raise it for every new version (default 1)");
    c->add_option("--mode", mode,
                  "Enforcement mode asked for: off, measure, audit, enforce "
                  "(default enforce)")
        ->check(CLI::IsMember({"off", "measure", "audit", "enforce"}));
    c->add_option("--not-before", not_before,
                  "Start of validity, YYYY-MM-DDTHH:MM:SSZ (default: now)");
    c->add_option("--not-after", not_after,
                  "End of validity (exclusive), YYYY-MM-DDTHH:MM:SSZ (default: --valid-days "
                  "after the start)");
    c->add_option("--valid-days", valid_days,
                  "Days of validity when --not-after is not given "
                  "(default 365)")
        ->check(CLI::Range(1u, 36500u));
    c->add_option("--image", images, "An image digest (sha256:HEX) the policy applies to; repeat");
  }

  Result<void> apply(Policy& p) const {
    p.name = name;
    p.issuer = issuer;
    p.serial = serial;
    p.mode = *policy::parse_mode(mode);
    std::int64_t start = now_seconds();
    if (!not_before.empty()) {
      auto t = policy::parse_time(not_before);
      if (!t) return std::move(t).error().with_context("--not-before");
      start = *t;
    }
    p.not_before = start;
    p.not_after = start + static_cast<std::int64_t>(valid_days) * 86400;
    if (!not_after.empty()) {
      auto t = policy::parse_time(not_after);
      if (!t) return std::move(t).error().with_context("--not-after");
      p.not_after = *t;
    }
    for (const std::string& i : images) {
      auto d = parse_image_digest(i);
      if (!d) return std::move(d).error().with_context("--image");
      p.images.push_back(*d);
    }
    return ok_result();
  }

  static Result<crypto::Digest> parse_image_digest(const std::string& text) {
    if (text.rfind("sha256:", 0) != 0) {
      return Error(Errc::kInvalidArgument, "an image digest is written sha256:HEX");
    }
    return crypto::Digest::from_hex(crypto::HashAlg::kSha256, text.substr(7));
  }
};

nlohmann::json summary_json(const Policy& p) {
  nlohmann::json images = nlohmann::json::array();
  for (const auto& d : p.images) images.push_back("sha256:" + d.hex());
  nlohmann::json doc = {{"name", p.name},
                        {"issuer", p.issuer},
                        {"serial", p.serial},
                        {"not_before", policy::format_time(p.not_before)},
                        {"not_after", policy::format_time(p.not_after)},
                        {"mode", policy::mode_name(p.mode)},
                        {"images", images},
                        {"allowed_digests", p.allow.size()},
                        {"excludes", p.excludes},
                        {"signed", p.signature.has_value()}};
  if (p.signature) {
    doc["signature"] = {{"alg", p.signature->alg},
                        {"key_id", "sha256:" + p.signature->key_id.hex()},
                        {"certificates", p.signature->certificates.size()}};
  }
  return doc;
}

// ---- create ----

struct CreateArgs {
  HeaderArgs header;
  std::string from;
  std::string out;
  bool all = false;
  bool exec_only = false;
  bool any_image = false;
  std::vector<std::string> excludes;
  std::vector<std::string> xattrs;
  std::string alg = "sha256";
  unsigned threads = 0;
  bool json = false;
};

int run_create(const CreateArgs& args) {
  Policy p;
  if (auto h = args.header.apply(p); !h) return report_error(h.error());
  auto alg = crypto::parse_hash_alg(args.alg);
  if (!alg) return report_error("unknown --alg '" + args.alg + "'");
  image::ManifestOptions options;
  options.threads = args.threads;
  options.content_digest = *alg;
  if (auto problem = image_source_problem(args.from); !problem.empty()) {
    report_error(problem);
    return kExitUsage;
  }
  auto m = read_image_source(args.from, options);
  if (!m) return report_error(std::move(m).error().with_context(args.from));
  if (!args.any_image) {
    auto d = m->digest();
    if (!d) return report_error(d.error());
    p.images.push_back(*d);
  }
  policy::CreateOptions co;
  co.all = args.all;
  co.exec_only = args.exec_only;
  co.excludes = args.excludes;
  auto report = policy::add_from_manifest(*m, co, p);
  if (!report) return report_error(report.error());
  if (auto w = write_output(args.out, policy::to_json(p)); !w) return report_error(w.error());
  spdlog::info("{}: {} regular files, {} listed, {} excluded", args.from, report->files,
               report->listed, report->excluded);
  if (args.json) {
    print_json({{"out", args.out},
                {"files", report->files},
                {"listed", report->listed},
                {"excluded", report->excluded},
                {"allowed_digests", p.allow.size()},
                {"images", summary_json(p)["images"]}});
  } else if (args.out != "-") {
    std::printf(
        "%s: %zu digests from %zu files (%zu excluded); unsigned: sign it with "
        "ctrust policy sign\n",
        args.out.c_str(), p.allow.size(), report->files, report->excluded);
  }
  return kExitOk;
}

// ---- sign ----

struct SignArgs {
  std::string key;
  std::string cert;
  std::string file;
  std::string out;
};

int run_sign(const SignArgs& args) {
  auto p = policy::load_policy(args.file);
  if (!p) return report_error(p.error());
  auto key = crypto::PrivateKey::load_pem_file(args.key);
  if (!key) return report_error(key.error());
  std::vector<crypto::Certificate> chain;
  if (!args.cert.empty()) {
    auto data = read_file(args.cert, 1 << 20);
    if (!data) return report_error(data.error());
    auto certs = crypto::Certificate::bundle_from_pem(as_text(*data));
    if (!certs) return report_error(std::move(certs).error().with_context(args.cert));
    chain = std::move(*certs);
  }
  if (auto s = policy::sign_policy(*p, *key, chain); !s) return report_error(s.error());
  std::string out = args.out.empty() ? args.file : args.out;
  if (auto w = write_output(out, policy::to_json(*p)); !w) return report_error(w.error());
  spdlog::info("{}: signed with {} key sha256:{}", out, p->signature->alg,
               p->signature->key_id.hex());
  return kExitOk;
}

// ---- verify ----

struct VerifyArgs {
  std::string trust;
  std::string file;
  std::string at;
  bool json = false;
};

int run_verify(const VerifyArgs& args) {
  std::int64_t now = now_seconds();
  if (!args.at.empty()) {
    auto t = policy::parse_time(args.at);
    if (!t) return report_error(std::move(t).error().with_context("--at"));
    now = *t;
  }
  auto p = policy::load_policy(args.file);
  if (!p) return report_error(p.error());
  auto anchors = policy::load_trust_anchors(args.trust);
  if (!anchors) return report_error(anchors.error());
  auto r = policy::verify_policy(*p, *anchors, now);
  if (!r) return report_error(r.error());
  if (args.json) {
    print_json({{"file", args.file},
                {"verified", r->ok},
                {"reason", r->reason},
                {"signer", r->signer},
                {"policy", summary_json(*p)}});
  } else if (r->ok) {
    std::printf("%s: OK: %s, serial %llu, signed by %s, valid until %s\n", args.file.c_str(),
                p->name.c_str(), static_cast<unsigned long long>(p->serial), r->signer.c_str(),
                policy::format_time(p->not_after).c_str());
  } else {
    std::printf("%s: FAILED: %s\n", args.file.c_str(), r->reason.c_str());
  }
  return r->ok ? kExitOk : kExitRejected;
}

// ---- show ----

struct ShowArgs {
  std::string file;
  bool entries = false;
  bool json = false;
};

int run_show(const ShowArgs& args) {
  auto p = policy::load_policy(args.file);
  if (!p) return report_error(p.error());
  if (args.json) {
    nlohmann::json doc = summary_json(*p);
    if (args.entries) {
      nlohmann::json allow = nlohmann::json::array();
      for (const auto& a : p->allow) {
        allow.push_back(
            {{"digest", std::string(crypto::hash_name(a.digest.alg)) + ":" + a.digest.hex()},
             {"paths", a.paths}});
      }
      doc["allow"] = std::move(allow);
    }
    print_json(doc);
    return kExitOk;
  }
  std::printf("name:       %s\nissuer:     %s\nserial:     %llu\n", p->name.c_str(),
              p->issuer.c_str(), static_cast<unsigned long long>(p->serial));
  std::printf("valid:      %s to %s%s\n", policy::format_time(p->not_before).c_str(),
              policy::format_time(p->not_after).c_str(),
              policy::validity_problem(*p, now_seconds()).empty() ? "" : " (not valid now)");
  std::printf("mode:       %s\n", std::string(policy::mode_name(p->mode)).c_str());
  if (p->images.empty()) {
    std::printf("images:     any\n");
  } else {
    std::printf("images:     %zu\n", p->images.size());
  }
  for (const auto& d : p->images) std::printf("  sha256:%s\n", d.hex().c_str());
  std::printf("allowed:    %zu digests\n", p->allow.size());
  std::printf("excludes:   %zu\n", p->excludes.size());
  for (const auto& e : p->excludes) std::printf("  %s\n", e.c_str());
  if (p->signature) {
    std::printf("signature:  %s by key sha256:%s%s\n", p->signature->alg.c_str(),
                p->signature->key_id.hex().c_str(),
                p->signature->certificates.empty() ? "" : " (certificate chain included)");
  } else {
    std::printf("signature:  none\n");
  }
  if (args.entries) {
    for (const auto& a : p->allow) {
      std::printf("%s:%s", std::string(crypto::hash_name(a.digest.alg)).c_str(),
                  a.digest.hex().c_str());
      if (a.paths.empty()) std::printf(" (any path)");
      for (const auto& path : a.paths) std::printf(" %s", printable(path, 4096).c_str());
      std::printf("\n");
    }
  }
  return kExitOk;
}

// ---- merge ----

struct MergeArgs {
  std::vector<std::string> files;
  std::string out;
  std::string name;
  std::optional<std::uint64_t> serial;
};

int run_merge(const MergeArgs& args) {
  std::vector<Policy> all;
  for (const auto& f : args.files) {
    auto p = policy::load_policy(f);
    if (!p) return report_error(p.error());
    all.push_back(std::move(*p));
  }
  Policy base = std::move(all.front());
  for (std::size_t i = 1; i < all.size(); ++i) {
    if (all[i].mode != base.mode) {
      spdlog::warn("{} asks for mode {}; the merged policy keeps {} from {}", args.files[i],
                   policy::mode_name(all[i].mode), policy::mode_name(base.mode), args.files[0]);
    }
  }
  std::vector<Policy> rest(std::make_move_iterator(all.begin() + 1),
                           std::make_move_iterator(all.end()));
  if (auto m = policy::merge_into(base, rest); !m) return report_error(m.error());
  if (!args.name.empty()) base.name = args.name;
  if (args.serial) base.serial = *args.serial;
  if (auto n = policy::normalize(base); !n) return report_error(n.error());
  if (auto w = write_output(args.out, policy::to_json(base)); !w) return report_error(w.error());
  if (args.out != "-") {
    std::printf("%s: %zu digests from %zu policies; unsigned: sign it with ctrust policy sign\n",
                args.out.c_str(), base.allow.size(), args.files.size());
  }
  return kExitOk;
}

// ---- import / export ----

struct ImportArgs {
  HeaderArgs header;
  std::string keylime;
  std::string checksums;
  std::string alg;
  std::string root = "/";
  std::string out;
};

int run_import(const ImportArgs& args) {
  if (args.keylime.empty() == args.checksums.empty()) {
    return report_error("give exactly one of --keylime FILE and --checksums FILE");
  }
  Policy p;
  if (auto h = args.header.apply(p); !h) return report_error(h.error());
  const std::string& in = args.keylime.empty() ? args.checksums : args.keylime;
  auto data = read_file(in, policy::kMaxPolicyBytes);
  if (!data) return report_error(data.error());
  Result<policy::ImportReport> report = Error(Errc::kInternal, "unset");
  if (!args.keylime.empty()) {
    report = policy::import_keylime(as_text(*data), p);
  } else {
    std::optional<crypto::HashAlg> alg;
    if (!args.alg.empty()) {
      alg = crypto::parse_hash_alg(args.alg);
      if (!alg) return report_error("unknown --alg '" + args.alg + "'");
    }
    report = policy::import_checksums(as_text(*data), alg, args.root, p);
  }
  if (!report) return report_error(std::move(report).error().with_context(in));
  for (const auto& w : report->warnings) spdlog::warn("{}: {}", in, w);
  if (auto w = write_output(args.out, policy::to_json(p)); !w) return report_error(w.error());
  if (args.out != "-") {
    std::printf(
        "%s: %zu digests, %zu excludes imported from %s; unsigned: sign it with ctrust "
        "policy sign\n",
        args.out.c_str(), report->digests, report->excludes, in.c_str());
  }
  return kExitOk;
}

struct ExportArgs {
  bool keylime = false;
  bool skip = false;
  std::string file;
  std::string out = "-";
};

int run_export(const ExportArgs& args) {
  if (!args.keylime) return report_error("say which format to export: --keylime");
  auto p = policy::load_policy(args.file);
  if (!p) return report_error(p.error());
  policy::ExportReport report;
  auto text = policy::export_keylime(*p, args.skip, report);
  if (!text) return report_error(text.error());
  for (const auto& s : report.skipped) spdlog::warn("left out: {}", s);
  if (auto w = write_output(args.out, *text); !w) return report_error(w.error());
  return kExitOk;
}

}  // namespace

void register_policy_commands(CLI::App& app, Context& ctx) {
  CLI::App* pol = app.add_subcommand("policy",
                                     "Create, sign, verify and convert signed "
                                     "allowlists (docs/POLICY.md)");
  pol->require_subcommand(1);

  auto create = std::make_shared<CreateArgs>();
  CLI::App* c = pol->add_subcommand(
      "create", "List the executables, shared objects and scripts of an image with their digests");
  c->add_option("--from", create->from,
                "Root filesystem directory, /proc/PID/root, or oci:DIR[:TAG]")
      ->required();
  c->add_option("--out", create->out, "Policy file to write ('-': standard output)")->required();
  create->header.add_to(c);
  c->add_flag("--all", create->all, "List every regular file, not only ELF files and scripts");
  c->add_flag("--exec-only", create->exec_only, "List only files with an execute permission bit");
  c->add_option("--exclude", create->excludes,
                "Exclude rule (POSIX extended regex matched at the path start): matching "
                "files are not listed and are accepted at run time; repeat");
  c->add_flag("--any-image", create->any_image,
              "Do not tie the policy to the source's image digest");
  c->add_option("--alg", create->alg, "File digest algorithm (default sha256, as IMA logs)");
  c->add_option("--threads", create->threads, "Hashing threads (default: one per CPU)");
  c->add_flag("--json", create->json, "Print JSON");
  c->callback([create, &ctx] { ctx.exit_code = run_create(*create); });

  auto sign = std::make_shared<SignArgs>();
  c = pol->add_subcommand("sign", "Sign a policy (replacing any signature)");
  c->add_option("--key", sign->key, "Private key PEM (ctrust key generate)")->required();
  c->add_option("--cert", sign->cert,
                "Certificate PEM bundle for the key: signer first, then intermediates");
  c->add_option("--out", sign->out, "Write the signed policy here (default: in place)");
  c->add_option("file", sign->file, "Policy file")->required();
  c->callback([sign, &ctx] { ctx.exit_code = run_sign(*sign); });

  auto verify = std::make_shared<VerifyArgs>();
  c = pol->add_subcommand("verify",
                          "Check a policy's signature, signer and validity window "
                          "(exit 0: trusted, 1: not)");
  c->add_option("--trust", verify->trust,
                "PEM file of trusted signer public keys and/or CA certificates")
      ->required();
  c->add_option("--at", verify->at,
                "Check validity at this time (YYYY-MM-DDTHH:MM:SSZ) "
                "instead of now");
  c->add_flag("--json", verify->json, "Print JSON");
  c->add_option("file", verify->file, "Policy file")->required();
  c->callback([verify, &ctx] { ctx.exit_code = run_verify(*verify); });

  auto show = std::make_shared<ShowArgs>();
  c = pol->add_subcommand("show", "Print a policy's header and, with --entries, its digests");
  c->add_flag("--entries", show->entries, "Also list every allowed digest and its paths");
  c->add_flag("--json", show->json, "Print JSON");
  c->add_option("file", show->file, "Policy file")->required();
  c->callback([show, &ctx] { ctx.exit_code = run_show(*show); });

  auto merge = std::make_shared<MergeArgs>();
  c = pol->add_subcommand("merge", "Union of several policies (header from the first; unsigned)");
  c->add_option("--out", merge->out, "Policy file to write ('-': standard output)")->required();
  c->add_option("--name", merge->name, "Name of the merged policy (default: the first's)");
  c->add_option("--serial", merge->serial, "Serial of the merged policy (default: the first's)");
  c->add_option("files", merge->files, "Policy files")->required()->expected(2, 1 << 20);
  c->callback([merge, &ctx] { ctx.exit_code = run_merge(*merge); });

  auto import = std::make_shared<ImportArgs>();
  c = pol->add_subcommand("import",
                          "Make a policy from a Keylime runtime policy or a "
                          "sha256sum-style checksum list");
  c->add_option("--keylime", import->keylime, "Keylime runtime policy (JSON, version 1)");
  c->add_option("--checksums", import->checksums,
                "Checksum list: 'HEX  PATH' lines as written by sha256sum");
  c->add_option("--alg", import->alg, "Checksum list algorithm (default: from digest length)");
  c->add_option("--root", import->root,
                "Checksum list: directory relative names are under (default /)");
  c->add_option("--out", import->out, "Policy file to write ('-': standard output)")->required();
  import->header.add_to(c);
  c->callback([import, &ctx] { ctx.exit_code = run_import(*import); });

  auto exp = std::make_shared<ExportArgs>();
  c = pol->add_subcommand("export", "Write a policy as a Keylime runtime policy");
  c->add_flag("--keylime", exp->keylime, "Keylime runtime policy (JSON, version 1)")->required();
  c->add_flag("--skip-inexpressible", exp->skip,
              "Leave out entries Keylime cannot express (any path, globs) instead of failing");
  c->add_option("--out", exp->out, "Output file (default: standard output)");
  c->add_option("file", exp->file, "Policy file")->required();
  c->callback([exp, &ctx] { ctx.exit_code = run_export(*exp); });
}

}  // namespace ctrust::cli
