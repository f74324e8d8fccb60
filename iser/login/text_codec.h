// iSCSI text key=value codec (RFC 7143 sec 6.1).
//
// A data segment of a Login or Text PDU is a sequence of "key=value\0" pairs. This file
// turns such bytes into an ordered list of pairs (and back) and decodes the value
// encodings of sec 6.1: numbers (decimal, 0x hex, 0b base64), booleans (Yes/No), lists
// (comma separated) and binary values (0x hex or 0b base64). Pure functions; every
// malformed input yields an absl::Status, never a crash.
#ifndef ISER_LOGIN_TEXT_CODEC_H_
#define ISER_LOGIN_TEXT_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace iser::login {

struct KeyValue {
  std::string key;
  std::string value;
  bool operator==(const KeyValue&) const = default;
};
using KeyValueList = std::vector<KeyValue>;

inline constexpr size_t kMaxKeyNameLength = 63;       // sec 6.1
inline constexpr size_t kMaxValueLength = 255;        // per (list element) value, sec 6.1
inline constexpr size_t kMaxLargeValueLength = 8192;  // encoded binary values (CHAP_C, ...)

// Special values (sec 6.2).
inline constexpr std::string_view kNotUnderstood = "NotUnderstood";
inline constexpr std::string_view kIrrelevant = "Irrelevant";
inline constexpr std::string_view kReject = "Reject";

// True for a syntactically valid key name: 1..63 characters from letters, digits,
// '.', '-', '+', '@', '_' (after an "X#" prefix for IANA-registered extension keys).
bool IsValidKeyName(std::string_view key);

// The longest encoded value accepted for `key` (8192 for binary-valued security keys,
// 255 per list element otherwise).
size_t MaxValueLength(std::string_view key);

// Parses "k=v\0k=v\0...". Empty strings between NULs (padding) are skipped; a missing
// final NUL is tolerated. Errors: no '=', bad key name, value too long, duplicate key.
absl::StatusOr<KeyValueList> ParseText(std::string_view data);

// Appends "key=value\0".
void AppendKeyValue(std::string* out, std::string_view key, std::string_view value);
std::string EncodeText(const KeyValueList& pairs);

// Finds a key in a parsed list; nullptr when absent.
const KeyValue* FindKey(const KeyValueList& pairs, std::string_view key);

// numerical-value: decimal, "0x"/"0X" hex or "0b"/"0B" base64, at most 2^64-1.
absl::StatusOr<uint64_t> ParseNumber(std::string_view value);
// boolean-value: exactly "Yes" or "No".
absl::StatusOr<bool> ParseBool(std::string_view value);
inline std::string_view BoolText(bool b) { return b ? "Yes" : "No"; }
// Comma-separated list; an empty element is an error.
absl::StatusOr<std::vector<std::string_view>> ParseList(std::string_view value);
// binary-value: "0x" hex (odd digit count allowed, as sec 6.1 says) or "0b" base64.
absl::StatusOr<std::string> ParseBinary(std::string_view value);
// Encodes bytes as "0x" + lowercase hex.
std::string EncodeHex(std::string_view bytes);
// Encodes bytes as "0b" + base64 (RFC 4648, padded).
std::string EncodeBase64(std::string_view bytes);

}  // namespace iser::login

#endif  // ISER_LOGIN_TEXT_CODEC_H_
