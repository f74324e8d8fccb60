// Shared helpers for the login tests.
#ifndef TESTS_ISER_LOGIN_LOGIN_TEST_UTIL_H_
#define TESTS_ISER_LOGIN_LOGIN_TEST_UTIL_H_

#include <map>
#include <string>
#include <string_view>

#include "iser/login/negotiation.h"
#include "iser/login/text_codec.h"

namespace iser::login::testing {

inline constexpr char kTarget[] = "iqn.2024-01.io.iser:disk1";
inline constexpr char kInitiator[] = "iqn.2024-01.io.client:node1";

// A target config with one node (kTarget) and deterministic "random" bytes.
inline TargetLoginConfig MakeTargetConfig(TargetNodeInfo node = {}) {
  if (node.name.empty()) node.name = kTarget;
  TargetLoginConfig c;
  c.lookup_target = [node](std::string_view name) -> std::optional<TargetNodeInfo> {
    if (name == node.name) return node;
    return std::nullopt;
  };
  c.random_bytes = [counter = uint8_t{0x40}](uint8_t* out, size_t len) mutable {
    for (size_t i = 0; i < len; ++i) out[i] = counter++;
  };
  return c;
}

// The keys a text holds, as a map (tests compare single keys).
inline std::map<std::string, std::string> Keys(std::string_view text) {
  std::map<std::string, std::string> m;
  auto kv = ParseText(text);
  if (!kv.ok()) return m;
  for (auto& p : *kv) m[p.key] = p.value;
  return m;
}

inline std::string Text(const KeyValueList& kv) { return EncodeText(kv); }

}  // namespace iser::login::testing

#endif  // TESTS_ISER_LOGIN_LOGIN_TEST_UTIL_H_
