#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "iser/initiator/session_config.h"

namespace iser::initiator {
namespace {

struct NumField {
  const char* key;
  uint32_t login::OperationalParams::*field;
};
constexpr NumField kNumFields[] = {
    {"MaxConnections", &login::OperationalParams::max_connections},
    {"MaxBurstLength", &login::OperationalParams::max_burst_length},
    {"FirstBurstLength", &login::OperationalParams::first_burst_length},
    {"DefaultTime2Wait", &login::OperationalParams::default_time2wait},
    {"DefaultTime2Retain", &login::OperationalParams::default_time2retain},
    {"MaxOutstandingR2T", &login::OperationalParams::max_outstanding_r2t},
    {"ErrorRecoveryLevel", &login::OperationalParams::error_recovery_level},
    {"InitiatorMaxRecvDSL", &login::OperationalParams::initiator_max_recv_dsl},
    {"TargetMaxRecvDSL", &login::OperationalParams::target_max_recv_dsl},
};
struct BoolField {
  const char* key;
  bool login::OperationalParams::*field;
};
constexpr BoolField kBoolFields[] = {
    {"HeaderDigest", &login::OperationalParams::header_digest},
    {"DataDigest", &login::OperationalParams::data_digest},
    {"InitialR2T", &login::OperationalParams::initial_r2t},
    {"ImmediateData", &login::OperationalParams::immediate_data},
    {"DataPDUInOrder", &login::OperationalParams::data_pdu_in_order},
    {"DataSequenceInOrder", &login::OperationalParams::data_sequence_in_order},
    {"RDMAExtensions", &login::OperationalParams::rdma_extensions},
};

}  // namespace

std::string SessionState::Serialize() const {
  std::string out = absl::StrCat("portal=", portal, "\ninitiator=", initiator_name,
                                 "\ntarget=", target_name, "\nisid=", isid, "\ntsih=", tsih,
                                 "\ncmdsn=", cmd_sn, "\nexpstatsn=", exp_stat_sn, "\n");
  for (const NumField& f : kNumFields) absl::StrAppend(&out, f.key, "=", params.*f.field, "\n");
  for (const BoolField& f : kBoolFields) {
    absl::StrAppend(&out, f.key, "=", params.*f.field ? "1" : "0", "\n");
  }
  return out;
}

SessionConfig SessionState::ToConfig() const {
  SessionConfig c;
  c.portal = portal;
  c.initiator_name = initiator_name;
  c.target_name = target_name;
  c.isid = isid;
  c.header_digest = params.header_digest;
  c.data_digest = params.data_digest;
  return c;
}

absl::StatusOr<SessionState> SessionState::Parse(const std::string& text) {
  SessionState s;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos)
      return absl::InvalidArgumentError(absl::StrCat("bad line: ", line));
    std::string key = line.substr(0, eq);
    std::string value = line.substr(eq + 1);
    uint64_t n = 0;
    bool numeric = absl::SimpleAtoi(value, &n);
    auto need = [&]() -> absl::Status {
      return numeric ? absl::OkStatus()
                     : absl::InvalidArgumentError(absl::StrCat("not a number: ", line));
    };
    if (key == "portal") {
      s.portal = value;
    } else if (key == "initiator") {
      s.initiator_name = value;
    } else if (key == "target") {
      s.target_name = value;
    } else if (key == "isid" || key == "tsih" || key == "cmdsn" || key == "expstatsn") {
      if (absl::Status st = need(); !st.ok()) return st;
      if (key == "isid") s.isid = n;
      if (key == "tsih") s.tsih = static_cast<uint16_t>(n);
      if (key == "cmdsn") s.cmd_sn = static_cast<uint32_t>(n);
      if (key == "expstatsn") s.exp_stat_sn = static_cast<uint32_t>(n);
    } else {
      bool known = false;
      for (const NumField& f : kNumFields) {
        if (key != f.key) continue;
        if (absl::Status st = need(); !st.ok()) return st;
        s.params.*f.field = static_cast<uint32_t>(n);
        known = true;
      }
      for (const BoolField& f : kBoolFields) {
        if (key != f.key) continue;
        if (absl::Status st = need(); !st.ok()) return st;
        s.params.*f.field = n != 0;
        known = true;
      }
      if (!known) return absl::InvalidArgumentError(absl::StrCat("unknown key: ", key));
    }
  }
  if (s.portal.empty() || s.isid == 0) {
    return absl::InvalidArgumentError("session state lacks portal or isid");
  }
  return s;
}

}  // namespace iser::initiator
