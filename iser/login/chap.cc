#include "iser/login/chap.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <memory>

namespace iser::login {
namespace {

const EVP_MD* Digest(int algorithm) {
  switch (algorithm) {
    case kChapMd5:
      return EVP_md5();
    case kChapSha1:
      return EVP_sha1();
    case kChapSha256:
      return EVP_sha256();
    case kChapSha3_256:
      return EVP_sha3_256();
    default:
      return nullptr;
  }
}

}  // namespace

bool IsSupportedChapAlgorithm(int algorithm) { return Digest(algorithm) != nullptr; }

size_t ChapDigestLength(int algorithm) {
  const EVP_MD* md = Digest(algorithm);
  return md == nullptr ? 0 : static_cast<size_t>(EVP_MD_get_size(md));
}

size_t ChapChallengeLength(int algorithm) {
  return std::max<size_t>(16, ChapDigestLength(algorithm));
}

absl::StatusOr<std::string> ChapResponse(int algorithm, uint8_t identifier, std::string_view secret,
                                         std::string_view challenge) {
  const EVP_MD* md = Digest(algorithm);
  if (md == nullptr) return absl::InvalidArgumentError("unsupported CHAP algorithm");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int out_len = 0;
  if (ctx == nullptr || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), &identifier, 1) != 1 ||
      EVP_DigestUpdate(ctx.get(), secret.data(), secret.size()) != 1 ||
      EVP_DigestUpdate(ctx.get(), challenge.data(), challenge.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out, &out_len) != 1) {
    return absl::InternalError("CHAP digest failed");
  }
  return std::string(reinterpret_cast<const char*>(out), out_len);
}

bool ChapEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool FillRandom(const std::function<void(uint8_t*, size_t)>& source, uint8_t* out, size_t len) {
  if (source) {
    source(out, len);
    return true;
  }
  return RAND_bytes(out, static_cast<int>(len)) == 1;
}

}  // namespace iser::login
