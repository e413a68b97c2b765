// Building policies from other sources: an image's files, Keylime runtime policies
// (FORMATS.md, "Keylime runtime policy"), and sha256sum-style checksum lists; and writing
// a policy back out as a Keylime runtime policy.
//
// Imported paths are literal file names; in a policy, paths are glob patterns, so the glob
// characters * ? [ \ of an imported name are escaped with a backslash, and export undoes
// that. Importers add to `into` and never touch its header (name, issuer, window, mode).
//
// Thread safety: reentrant.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "image/manifest.h"
#include "policy/policy.h"

namespace ctrust::policy {

// Escapes * ? [ \ so that fnmatch() matches exactly `path`; and back, for patterns that
// are literal (nullopt when the pattern has an unescaped glob character).
std::string literal_pattern(std::string_view path);
std::optional<std::string> pattern_literal(std::string_view pattern);

struct CreateOptions {
  bool all = false;                   // every regular file, not only ELF files and scripts
  bool exec_only = false;             // only files with an execute permission bit
  std::vector<std::string> excludes;  // recorded as exclude rules; matching files not listed
};

struct CreateReport {
  std::size_t files = 0;     // regular files in the image
  std::size_t listed = 0;    // allow entries added (before merging equal digests)
  std::size_t excluded = 0;  // files skipped by an exclude rule
};

// The manifest must have been built with ManifestOptions::content_digest set.
Result<CreateReport> add_from_manifest(const image::Manifest& manifest,
                                       const CreateOptions& options, Policy& into);

struct ImportReport {
  std::size_t digests = 0;            // allow entries added
  std::size_t excludes = 0;           // exclude rules added
  std::vector<std::string> warnings;  // what was not imported, and why
};

// A Keylime runtime policy (version 1). Keyrings, ima-buf digests, the boot aggregate and
// verification keys have no place in a ctrust policy; they are reported as warnings.
Result<ImportReport> import_keylime(std::string_view json, Policy& into);

struct ExportReport {
  std::size_t digests = 0;
  std::vector<std::string> skipped;  // allow entries Keylime cannot express (with reason)
};

// Keylime lists digests per literal path; an entry allowed at any path or at a glob cannot
// be written without widening it. With `skip_inexpressible` such entries are left out
// (narrowing the policy) and listed in the report; without, they are an error.
Result<std::string> export_keylime(const Policy& policy, bool skip_inexpressible,
                                   ExportReport& report);

// "HEX  PATH" or "HEX *PATH" lines as written by sha256sum and friends (a leading '\'
// marks an escaped name: \\ and \n). The algorithm follows from the digest length unless
// `alg` is given. Relative names ("./bin/sh", "bin/sh") are taken below `root` ("/").
Result<ImportReport> import_checksums(std::string_view text, std::optional<crypto::HashAlg> alg,
                                      std::string_view root, Policy& into);

}  // namespace ctrust::policy
