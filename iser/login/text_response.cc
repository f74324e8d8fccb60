// Text requests in full feature phase on the target (RFC 7143 sec 11.10-11.11 and
// Appendix C "SendTargets Operation").
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "iser/login/keys.h"
#include "iser/login/negotiation.h"
#include "iser/login/text_codec.h"

namespace iser::login {
namespace {

bool Allowed(const TargetNodeInfo& t, std::string_view initiator_name) {
  return t.allowed_initiators.empty() ||
         std::find(t.allowed_initiators.begin(), t.allowed_initiators.end(), initiator_name) !=
             t.allowed_initiators.end();
}

void AppendTarget(std::string* out, const TargetNodeInfo& t,
                  const std::vector<PortalInfo>& portals) {
  AppendKeyValue(out, "TargetName", t.name);
  for (const PortalInfo& p : portals) {
    AppendKeyValue(out, "TargetAddress", absl::StrCat(p.address, ",", p.target_portal_group_tag));
  }
}

}  // namespace

absl::StatusOr<std::string> TargetTextResponseOrError(std::string_view request_text,
                                                      SessionType session_type,
                                                      std::string_view session_target_name,
                                                      const std::vector<TargetNodeInfo>& targets,
                                                      const std::vector<PortalInfo>& portals,
                                                      std::string_view initiator_name) {
  absl::StatusOr<KeyValueList> keys = ParseText(request_text);
  if (!keys.ok()) return keys.status();
  std::string out;
  for (const KeyValue& kv : *keys) {
    if (kv.key == "SendTargets") {
      if (kv.value == "All") {
        if (session_type != SessionType::kDiscovery) {
          AppendKeyValue(&out, kv.key, kReject);  // All is for discovery sessions
          continue;
        }
        for (const TargetNodeInfo& t : targets) {
          if (Allowed(t, initiator_name)) AppendTarget(&out, t, portals);
        }
        continue;
      }
      // "<name>" asks about one target; "" means this session's target.
      std::string_view wanted = kv.value;
      if (wanted.empty()) {
        if (session_type != SessionType::kNormal) continue;
        wanted = session_target_name;
      }
      for (const TargetNodeInfo& t : targets) {
        if (t.name == wanted && Allowed(t, initiator_name)) {
          AppendTarget(&out, t, portals);
          break;
        }
      }
      continue;
    }
    // MaxRecvDataSegmentLength and the aliases may be declared in full feature phase
    // (use "ALI"); declarations get no answer.
    if (kv.key == "MaxRecvDataSegmentLength" || kv.key == "InitiatorAlias") continue;
    if (FindOperationalKey(kv.key) != nullptr || IsSecurityKey(kv.key) || IsIdentityKey(kv.key)) {
      AppendKeyValue(&out, kv.key, kReject);  // login-only keys
      continue;
    }
    AppendKeyValue(&out, kv.key, kNotUnderstood);
  }
  return out;
}

std::string TargetTextResponse(std::string_view request_text, SessionType session_type,
                               std::string_view session_target_name,
                               const std::vector<TargetNodeInfo>& targets,
                               const std::vector<PortalInfo>& portals,
                               std::string_view initiator_name) {
  absl::StatusOr<std::string> r = TargetTextResponseOrError(
      request_text, session_type, session_target_name, targets, portals, initiator_name);
  return r.ok() ? *std::move(r) : std::string();
}

}  // namespace iser::login
