// CHAP for iSCSI (RFC 7143 sec 12.1.3, RFC 1994): digests through OpenSSL EVP.
#ifndef ISER_LOGIN_CHAP_H_
#define ISER_LOGIN_CHAP_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace iser::login {

// CHAP_A values: the IANA "PPP Authentication Algorithms" numbers RFC 7143 refers to.
inline constexpr int kChapMd5 = 5;
inline constexpr int kChapSha1 = 6;
inline constexpr int kChapSha256 = 7;
inline constexpr int kChapSha3_256 = 8;

// Largest challenge we accept from a peer (sec 12.1.3 caps binary values at 1024 bytes).
inline constexpr size_t kMaxChapChallenge = 1024;

bool IsSupportedChapAlgorithm(int algorithm);
// Digest size in bytes (0 for unsupported algorithms).
size_t ChapDigestLength(int algorithm);
// Our challenge length for `algorithm`: the digest length, at least 16 bytes.
size_t ChapChallengeLength(int algorithm);

// H(identifier || secret || challenge).
absl::StatusOr<std::string> ChapResponse(int algorithm, uint8_t identifier, std::string_view secret,
                                         std::string_view challenge);

// Constant-time comparison of two byte strings.
bool ChapEqual(std::string_view a, std::string_view b);

// Fills `out` with `len` random bytes from `source`, or OpenSSL RAND_bytes if empty.
// False if no randomness could be had.
bool FillRandom(const std::function<void(uint8_t*, size_t)>& source, uint8_t* out, size_t len);

}  // namespace iser::login

#endif  // ISER_LOGIN_CHAP_H_
