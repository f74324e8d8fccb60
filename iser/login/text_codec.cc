#include "iser/login/text_codec.h"

#include <set>

#include "absl/strings/str_cat.h"

namespace iser::login {
namespace {

bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '+' || c == '@' || c == '_';
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int Base64Digit(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool HasPrefix(std::string_view v, char second) {
  return v.size() >= 2 && v[0] == '0' && (v[1] == second || v[1] == second - 'a' + 'A');
}

absl::StatusOr<std::string> DecodeHex(std::string_view digits) {
  if (digits.empty()) return absl::InvalidArgumentError("empty hex constant");
  std::string out;
  out.reserve(digits.size() / 2 + 1);
  size_t i = 0;
  if (digits.size() % 2 == 1) {  // a leading half byte
    int d = HexDigit(digits[0]);
    if (d < 0) return absl::InvalidArgumentError("bad hex digit");
    out.push_back(static_cast<char>(d));
    i = 1;
  }
  for (; i < digits.size(); i += 2) {
    int hi = HexDigit(digits[i]);
    int lo = HexDigit(digits[i + 1]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("bad hex digit");
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return out;
}

absl::StatusOr<std::string> DecodeBase64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0) {
    return absl::InvalidArgumentError("base64 constant length is not a multiple of 4");
  }
  size_t pad = 0;
  if (text.back() == '=') pad = (text[text.size() - 2] == '=') ? 2 : 1;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t acc = 0;
    for (size_t j = 0; j < 4; ++j) {
      char c = text[i + j];
      int d;
      if (c == '=' && i + 4 == text.size() && j >= 4 - pad) {
        d = 0;
      } else {
        d = Base64Digit(c);
        if (d < 0) return absl::InvalidArgumentError("bad base64 character");
      }
      acc = acc << 6 | static_cast<uint32_t>(d);
    }
    out.push_back(static_cast<char>(acc >> 16));
    out.push_back(static_cast<char>(acc >> 8));
    out.push_back(static_cast<char>(acc));
  }
  out.resize(out.size() - pad);
  return out;
}

}  // namespace

bool IsValidKeyName(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyNameLength) return false;
  // "X#" starts an IANA-registered extension key (sec 6.1 / 13.5.2).
  size_t start = key.starts_with("X#") ? 2 : 0;
  if (start == key.size()) return false;
  for (size_t i = start; i < key.size(); ++i) {
    if (!IsKeyChar(key[i])) return false;
  }
  return true;
}

size_t MaxValueLength(std::string_view key) {
  // Binary security values may carry up to 1024 bytes (hex doubles that) (sec 12.1.3).
  if (key == "CHAP_C" || key == "CHAP_R" || key.starts_with("SRP_") || key.starts_with("KRB_")) {
    return kMaxLargeValueLength;
  }
  return kMaxValueLength;
}

absl::StatusOr<KeyValueList> ParseText(std::string_view data) {
  KeyValueList out;
  std::set<std::string_view> seen;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t end = data.find('\0', pos);
    if (end == std::string_view::npos) end = data.size();
    std::string_view pair = data.substr(pos, end - pos);
    pos = end + 1;
    if (pair.empty()) continue;  // padding or stray terminator
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("text pair without '=' at offset ", end - pair.size()));
    }
    std::string_view key = pair.substr(0, eq);
    std::string_view value = pair.substr(eq + 1);
    if (!IsValidKeyName(key)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid key name (", key.size(), " bytes)"));
    }
    size_t limit = MaxValueLength(key);
    if (limit == kMaxValueLength) {
      // The 255-byte limit applies to each value of a list (sec 6.1).
      size_t start = 0;
      while (true) {
        size_t comma = value.find(',', start);
        size_t len = (comma == std::string_view::npos ? value.size() : comma) - start;
        if (len > limit) {
          return absl::InvalidArgumentError(
              absl::StrCat("value of ", std::string(key), " too long"));
        }
        if (comma == std::string_view::npos) break;
        start = comma + 1;
      }
      if (value.size() > kMaxLargeValueLength) {
        return absl::InvalidArgumentError(absl::StrCat("value of ", std::string(key), " too long"));
      }
    } else if (value.size() > limit) {
      return absl::InvalidArgumentError(absl::StrCat("value of ", std::string(key), " too long"));
    }
    if (!seen.insert(key).second) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate key ", std::string(key)));
    }
    out.push_back(KeyValue{std::string(key), std::string(value)});
  }
  return out;
}

void AppendKeyValue(std::string* out, std::string_view key, std::string_view value) {
  out->append(key);
  out->push_back('=');
  out->append(value);
  out->push_back('\0');
}

std::string EncodeText(const KeyValueList& pairs) {
  std::string out;
  for (const KeyValue& kv : pairs) AppendKeyValue(&out, kv.key, kv.value);
  return out;
}

const KeyValue* FindKey(const KeyValueList& pairs, std::string_view key) {
  for (const KeyValue& kv : pairs) {
    if (kv.key == key) return &kv;
  }
  return nullptr;
}

absl::StatusOr<uint64_t> ParseNumber(std::string_view value) {
  if (value.empty()) return absl::InvalidArgumentError("empty number");
  if (HasPrefix(value, 'x') || HasPrefix(value, 'b')) {
    absl::StatusOr<std::string> bytes =
        HasPrefix(value, 'x') ? DecodeHex(value.substr(2)) : DecodeBase64(value.substr(2));
    if (!bytes.ok()) return bytes.status();
    // Leading zero bytes do not count against the 64-bit limit.
    size_t first = bytes->find_first_not_of('\0');
    if (first != std::string::npos && bytes->size() - first > 8) {
      return absl::OutOfRangeError("number exceeds 2^64-1");
    }
    uint64_t v = 0;
    for (unsigned char c : *bytes) v = v << 8 | c;
    return v;
  }
  uint64_t v = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return absl::InvalidArgumentError("bad decimal digit");
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return absl::OutOfRangeError("number exceeds 2^64-1");
    v = v * 10 + d;
  }
  return v;
}

absl::StatusOr<bool> ParseBool(std::string_view value) {
  if (value == "Yes") return true;
  if (value == "No") return false;
  return absl::InvalidArgumentError("boolean value must be Yes or No");
}

absl::StatusOr<std::vector<std::string_view>> ParseList(std::string_view value) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t comma = value.find(',', start);
    std::string_view item = value.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty()) return absl::InvalidArgumentError("empty list element");
    out.push_back(item);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

absl::StatusOr<std::string> ParseBinary(std::string_view value) {
  if (HasPrefix(value, 'x')) return DecodeHex(value.substr(2));
  if (HasPrefix(value, 'b')) return DecodeBase64(value.substr(2));
  return absl::InvalidArgumentError("binary value must start with 0x or 0b");
}

std::string EncodeHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "0x";
  out.reserve(2 + bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::string EncodeBase64(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out = "0b";
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16 | static_cast<uint8_t>(bytes[i + 1]) << 8 |
                 static_cast<uint8_t>(bytes[i + 2]);
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

}  // namespace iser::login
