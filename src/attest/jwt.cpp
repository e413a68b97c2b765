#include "attest/jwt.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include <array>
#include <climits>
#include <cstdint>
#include <utility>

#include "util/json.h"
#include "util/text.h"
#include "util/unique_handle.h"

namespace ctrust::attest {
namespace {

using json = nlohmann::json;
using UniqueBn = UniquePtr<BIGNUM, BN_free>;
using UniqueEcdsaSig = UniquePtr<ECDSA_SIG, ECDSA_SIG_free>;

constexpr std::string_view kAlg = "ES256";
constexpr std::size_t kP256ScalarBytes = 32;
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string_view as_text(const Bytes& bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// The 6-bit value of a base64url character, or -1.
int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// Compact JSON; an Error (not an exception) for strings that are not valid UTF-8.
Result<std::string> dump_json(const json& value, const char* what) {
  try {
    return value.dump();
  } catch (const json::exception&) {
    return Error(Errc::kInvalidArgument,
                 std::string(what) + " contains a string that is not UTF-8");
  }
}

Result<Bytes> decode_part(std::string_view part, const char* what) {
  auto bytes = base64url_decode(part);
  if (!bytes) return std::move(bytes).error().with_context(std::string("JWT ") + what);
  return std::move(bytes).value();
}

Result<json> parse_json_part(const Bytes& bytes, const char* what) {
  auto value = parse_json_strict(as_text(bytes), kMaxJwtJsonDepth);
  if (!value) return std::move(value).error().with_context(std::string("JWT ") + what);
  if (!value->is_object()) {
    return Error(Errc::kFormat, std::string("JWT ") + what + " is not a JSON object");
  }
  return std::move(value).value();
}

Result<void> require_p256(crypto::KeyType type, const char* what) {
  if (type != crypto::KeyType::kEcdsaP256) {
    return Error(Errc::kInvalidArgument, std::string(what) + " is " +
                                             std::string(crypto::key_type_name(type)) +
                                             "; ES256 JWTs need an ecdsa-p256 key");
  }
  return ok_result();
}

crypto::SignOptions es256_options() {
  crypto::SignOptions options;
  options.hash = crypto::HashAlg::kSha256;
  return options;
}

Result<Bytes> bn_bytes(const BIGNUM* bn, std::size_t size) {
  if (static_cast<std::size_t>(BN_num_bytes(bn)) > size) {
    return Error(Errc::kFormat, "an ECDSA value is longer than the curve's scalar size");
  }
  Bytes out(size);
  if (BN_bn2binpad(bn, out.data(), static_cast<int>(size)) < 0) {
    return openssl_error("BN_bn2binpad");
  }
  return out;
}

}  // namespace

std::string base64url_encode(ByteView bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8) |
                      std::uint32_t{bytes[i + 2]};
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    std::uint32_t v = std::uint32_t{bytes[i]} << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
  } else if (rest == 2) {
    std::uint32_t v = (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

Result<Bytes> base64url_decode(std::string_view text) {
  Bytes out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    int v = sextet(text[i]);
    if (v < 0) {
      std::string why = text[i] == '=' ? " (padding is not allowed)" : "";
      return Error(Errc::kFormat, "malformed base64url: bad character '" +
                                      printable(text.substr(i, 1)) + "' at offset " +
                                      std::to_string(i) + why);
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xff));
    }
  }
  if (text.size() % 4 == 1) {
    return Error(Errc::kFormat,
                 "malformed base64url: impossible length " + std::to_string(text.size()));
  }
  // What is left over (2 or 4 bits) must be zero, or two spellings would decode alike.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return Error(Errc::kFormat, "malformed base64url: non-zero trailing bits (not canonical)");
  }
  return out;
}

Result<Bytes> ecdsa_der_to_raw(ByteView der, std::size_t scalar_bytes) {
  if (scalar_bytes == 0 || scalar_bytes > 66 || der.size() > static_cast<std::size_t>(LONG_MAX)) {
    return Error(Errc::kInvalidArgument, "bad ECDSA signature conversion arguments");
  }
  const unsigned char* p = der.data();
  UniqueEcdsaSig sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig || p != der.data() + der.size()) {
    return Error(Errc::kFormat, "malformed DER ECDSA signature");
  }
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  CTRUST_ASSIGN_OR_RETURN(Bytes out, bn_bytes(r, scalar_bytes));
  CTRUST_ASSIGN_OR_RETURN(Bytes s_bytes, bn_bytes(s, scalar_bytes));
  out.insert(out.end(), s_bytes.begin(), s_bytes.end());
  return out;
}

Result<Bytes> ecdsa_raw_to_der(ByteView raw) {
  if (raw.empty() || raw.size() % 2 != 0 || raw.size() > 132) {
    return Error(Errc::kFormat, "a raw ECDSA signature must be r || s of equal, non-zero sizes");
  }
  const int half = static_cast<int>(raw.size() / 2);
  UniqueBn r(BN_bin2bn(raw.data(), half, nullptr));
  UniqueBn s(BN_bin2bn(raw.data() + half, half, nullptr));
  if (!r || !s) return openssl_error("BN_bin2bn");
  UniqueEcdsaSig sig(ECDSA_SIG_new());
  if (!sig) return openssl_error("ECDSA_SIG_new");
  if (ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return openssl_error("ECDSA_SIG_set0");
  (void)r.release();  // now owned by sig
  (void)s.release();
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig.get(), &der);
  if (len <= 0 || der == nullptr) return openssl_error("i2d_ECDSA_SIG");
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

Result<std::string> sign_jwt(const json& header_extra, const json& claims,
                             const crypto::PrivateKey& key) {
  CTRUST_TRY(require_p256(key.type(), "the signing key"));
  if (!claims.is_object()) {
    return Error(Errc::kInvalidArgument, "JWT claims must be a JSON object");
  }
  json header = {{"alg", kAlg}, {"typ", "JWT"}};
  if (!header_extra.is_null()) {
    if (!header_extra.is_object()) {
      return Error(Errc::kInvalidArgument, "extra JWT header members must be a JSON object");
    }
    for (const auto& [name, value] : header_extra.items()) {
      if (name == "alg" || name == "crit") {
        return Error(Errc::kInvalidArgument, "the JWT header member \"" + name +
                                                 "\" cannot be set (ES256 only, no extensions)");
      }
      header[name] = value;
    }
  }
  CTRUST_ASSIGN_OR_RETURN(std::string header_text, dump_json(header, "the JWT header"));
  CTRUST_ASSIGN_OR_RETURN(std::string claims_text, dump_json(claims, "the JWT claims"));
  std::string token = base64url_encode(as_bytes(header_text));
  token += '.';
  token += base64url_encode(as_bytes(claims_text));
  CTRUST_ASSIGN_OR_RETURN(Bytes der, key.sign(as_bytes(token), es256_options()));
  CTRUST_ASSIGN_OR_RETURN(Bytes raw, ecdsa_der_to_raw(der, kP256ScalarBytes));
  token += '.';
  token += base64url_encode(raw);
  return token;
}

Result<VerifiedJwt> verify_jwt(std::string_view token, const crypto::PublicKey& key) {
  CTRUST_TRY(require_p256(key.type(), "the verification key"));
  if (token.size() > kMaxJwtBytes) {
    return Error(Errc::kLimit, "JWT is " + std::to_string(token.size()) +
                                   " bytes, more than the limit of " +
                                   std::to_string(kMaxJwtBytes));
  }
  const std::size_t dot1 = token.find('.');
  const std::size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return Error(Errc::kFormat,
                 "malformed JWT: expected three base64url parts separated by '.' (compact JWS)");
  }
  const std::string_view header_part = token.substr(0, dot1);
  const std::string_view claims_part = token.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view signature_part = token.substr(dot2 + 1);

  CTRUST_ASSIGN_OR_RETURN(Bytes header_bytes, decode_part(header_part, "header"));
  CTRUST_ASSIGN_OR_RETURN(Bytes claims_bytes, decode_part(claims_part, "claims"));
  CTRUST_ASSIGN_OR_RETURN(Bytes signature, decode_part(signature_part, "signature"));
  CTRUST_ASSIGN_OR_RETURN(json header, parse_json_part(header_bytes, "header"));
  auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string()) {
    return Error(Errc::kFormat, "JWT header has no \"alg\" string");
  }
  if (alg->get_ref<const std::string&>() != kAlg) {
    return Error(Errc::kFormat, "JWT algorithm \"" + printable(alg->get_ref<const std::string&>()) +
                                    "\" is not accepted: only ES256 is");
  }
  if (header.contains("crit")) {
    return Error(Errc::kFormat,
                 "JWT header lists critical extensions (\"crit\"); none are supported");
  }
  if (auto typ = header.find("typ"); typ != header.end() && !typ->is_string()) {
    return Error(Errc::kFormat, "JWT header \"typ\" is not a string");
  }
  if (signature.size() != kEs256SignatureBytes) {
    return Error(Errc::kFormat, "JWT signature is " + std::to_string(signature.size()) +
                                    " bytes; ES256 signatures are 64 (r || s)");
  }
  CTRUST_ASSIGN_OR_RETURN(Bytes der, ecdsa_raw_to_der(signature));
  const std::string_view signing_input = token.substr(0, dot2);
  CTRUST_ASSIGN_OR_RETURN(bool valid, key.verify(as_bytes(signing_input), der, es256_options()));
  if (!valid) return Error(Errc::kCrypto, "JWT signature does not verify");
  // The claims JSON is parsed only once it is known to come from the key holder.
  CTRUST_ASSIGN_OR_RETURN(json claims, parse_json_part(claims_bytes, "claims"));
  return VerifiedJwt{std::move(header), std::move(claims)};
}

Result<std::string> jwk_kid(const crypto::PublicKey& key) {
  CTRUST_ASSIGN_OR_RETURN(crypto::Digest fp, key.fingerprint());
  return fp.hex().substr(0, 16);
}

Result<json> jwk_of(const crypto::PublicKey& key) {
  CTRUST_TRY(require_p256(key.type(), "the key"));
  BIGNUM* x_raw = nullptr;
  BIGNUM* y_raw = nullptr;
  int got_x = EVP_PKEY_get_bn_param(key.native(), OSSL_PKEY_PARAM_EC_PUB_X, &x_raw);
  UniqueBn x(x_raw);
  int got_y = EVP_PKEY_get_bn_param(key.native(), OSSL_PKEY_PARAM_EC_PUB_Y, &y_raw);
  UniqueBn y(y_raw);
  if (got_x != 1 || got_y != 1) return openssl_error("reading the EC public point");
  CTRUST_ASSIGN_OR_RETURN(Bytes x_bytes, bn_bytes(x.get(), kP256ScalarBytes));
  CTRUST_ASSIGN_OR_RETURN(Bytes y_bytes, bn_bytes(y.get(), kP256ScalarBytes));
  CTRUST_ASSIGN_OR_RETURN(std::string kid, jwk_kid(key));
  return json{{"kty", "EC"},
              {"crv", "P-256"},
              {"x", base64url_encode(x_bytes)},
              {"y", base64url_encode(y_bytes)},
              {"kid", kid}};
}

}  // namespace ctrust::attest
