// Fuzzes the login text codec and both login negotiators.
//
// Input: the whole buffer is parsed as key=value text (and round-tripped), and answered
// as a full-feature Text request. Then byte 0 picks the target configuration and the
// rest is a sequence of records
//   [flags: csg(2) | nsg(2) << 2 | T << 4 | status << 5] [len lo] [len hi] [text...]
// fed as Login Requests to a TargetNegotiator and as Login Responses to an
// InitiatorNegotiator. Any crash, sanitizer report or broken round-trip is a finding.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "iser/login/initiator_negotiator.h"
#include "iser/login/negotiation.h"
#include "iser/login/text_codec.h"

namespace {

using namespace iser::login;

void ExerciseCodec(std::string_view text) {
  absl::StatusOr<KeyValueList> kv = ParseText(text);
  if (!kv.ok()) return;
  for (const KeyValue& p : *kv) {
    (void)ParseNumber(p.value);
    (void)ParseBool(p.value);
    (void)ParseList(p.value);
    absl::StatusOr<std::string> bin = ParseBinary(p.value);
    if (bin.ok()) {
      // Hex and base64 encodings must decode back to the same bytes.
      if (*ParseBinary(EncodeHex(*bin)) != *bin) __builtin_trap();
      if (!bin->empty() && *ParseBinary(EncodeBase64(*bin)) != *bin) __builtin_trap();
    }
  }
  absl::StatusOr<KeyValueList> again = ParseText(EncodeText(*kv));
  if (!again.ok() || *again != *kv) __builtin_trap();
}

struct Record {
  uint8_t flags;
  std::string text;
};

std::vector<Record> SplitRecords(std::string_view data) {
  std::vector<Record> out;
  while (data.size() >= 3 && out.size() < 64) {
    uint8_t flags = static_cast<uint8_t>(data[0]);
    size_t len = static_cast<uint8_t>(data[1]) | static_cast<size_t>(static_cast<uint8_t>(data[2]))
                                                     << 8;
    data.remove_prefix(3);
    len = std::min(len, data.size());
    out.push_back({flags, std::string(data.substr(0, len))});
    data.remove_prefix(len);
  }
  return out;
}

TargetLoginConfig MakeConfig(uint8_t bits) {
  TargetNodeInfo node;
  node.name = "iqn.2024-01.io.iser:disk1";
  node.alias = "disk1";
  if (bits & 0x04) node.chap = {"user1", "initiator-secret"};
  if (bits & 0x08) node.mutual_chap = {"target1", "target-secret"};
  if (bits & 0x10) node.allowed_initiators = {"iqn.2024-01.io.client:node1"};
  TargetLoginConfig c;
  c.rdma_capable = bits & 0x02;
  c.offer.header_digest = bits & 0x20;
  c.offer.max_burst_length = (bits & 0x40) ? 1048576 : 262144;
  c.offer.target_max_recv_dsl = (bits & 0x80) ? 65536 : 8192;
  c.lookup_target = [node](std::string_view name) -> std::optional<TargetNodeInfo> {
    if (name == node.name) return node;
    return std::nullopt;
  };
  c.random_bytes = [](uint8_t* out, size_t len) {
    for (size_t i = 0; i < len; ++i) out[i] = static_cast<uint8_t>(i * 7 + 1);
  };
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view all(reinterpret_cast<const char*>(data), size);
  ExerciseCodec(all);

  std::vector<TargetNodeInfo> targets(2);
  targets[0].name = "iqn.2024-01.io.iser:disk1";
  targets[1].name = "iqn.2024-01.io.iser:disk2";
  targets[1].allowed_initiators = {"iqn.x"};
  std::vector<PortalInfo> portals = {{"127.0.0.1:3260", 1}};
  (void)TargetTextResponse(all, SessionType::kDiscovery, "", targets, portals, "iqn.y");
  (void)TargetTextResponse(all, SessionType::kNormal, targets[0].name, targets, portals, "iqn.y");

  if (size == 0) return 0;
  const uint8_t bits = data[0];
  std::vector<Record> records = SplitRecords(all.substr(1));

  // Target side: every record is a Login Request.
  std::optional<OperationalParams> session;
  if (!(bits & 0x01)) session = OperationalParams{};
  TargetNegotiator target(MakeConfig(bits), bits & 0x01, session);
  for (const Record& r : records) {
    ExerciseCodec(r.text);
    LoginRequest req{static_cast<uint8_t>(r.flags & 3), static_cast<uint8_t>((r.flags >> 2) & 3),
                     (r.flags & 0x10) != 0, r.text};
    LoginResponse resp = target.Step(req);
    // Whatever the target says must itself be well-formed text.
    if (!ParseText(resp.text).ok()) __builtin_trap();
    if (resp.transit && resp.nsg <= resp.csg) __builtin_trap();
    (void)target.params();
  }

  // Initiator side: every record is a Login Response.
  InitiatorLoginConfig ic;
  ic.initiator_name = "iqn.2024-01.io.client:node1";
  ic.target_name = "iqn.2024-01.io.iser:disk1";
  ic.rdma = bits & 0x02;
  if (bits & 0x04) ic.chap = {"user1", "initiator-secret"};
  if (bits & 0x08) ic.mutual_chap = {"target1", "target-secret"};
  ic.random_bytes = [](uint8_t* out, size_t len) {
    for (size_t i = 0; i < len; ++i) out[i] = static_cast<uint8_t>(i * 13 + 5);
  };
  InitiatorNegotiator initiator(ic);
  InitiatorRequest first = initiator.Start();
  if (!ParseText(first.text).ok()) __builtin_trap();
  for (const Record& r : records) {
    LoginResponse resp;
    resp.csg = r.flags & 3;
    resp.nsg = (r.flags >> 2) & 3;
    resp.transit = (r.flags & 0x10) != 0;
    resp.status_class = (r.flags >> 5) == 7 ? 2 : 0;
    resp.text = r.text;
    absl::StatusOr<std::optional<InitiatorRequest>> next = initiator.OnResponse(resp);
    if (!next.ok()) break;
    if (!next->has_value()) break;
    if (!ParseText((*next)->text).ok()) __builtin_trap();
  }
  (void)initiator.params();
  return 0;
}
