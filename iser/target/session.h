// An iSCSI session on the target: its connections, command window and task set.
#ifndef ISER_TARGET_SESSION_H_
#define ISER_TARGET_SESSION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "iser/login/negotiation.h"
#include "iser/pdu/pdu_reader.h"
#include "iser/scsi/scsi_device.h"
#include "iser/target/task.h"

namespace iser::target {

class Connection;
struct TargetNode;

class Session {
 public:
  uint64_t id = 0;
  uint16_t tsih = 0;
  uint64_t isid = 0;
  std::string initiator_name;
  std::string initiator_alias;
  login::SessionType type = login::SessionType::kNormal;
  TargetNode* node = nullptr;  // null for discovery sessions
  login::OperationalParams params;
  scsi::ItNexus nexus;

  // Command window (RFC 7143 sec 3.2.2.1). MaxCmdSN = ExpCmdSN + window - 1.
  uint32_t exp_cmd_sn = 0;
  uint32_t window = 128;
  uint32_t max_cmd_sn() const { return exp_cmd_sn + window - 1; }

  // Non-immediate PDUs that arrived ahead of ExpCmdSN (multi-connection), by CmdSN.
  struct Pending {
    Connection* conn;
    pdu::ReceivedPdu pdu;
    IoBuffer data_buffer;  // holds pdu.data when the transport handed its buffer over
    // Unsolicited Data-Out for this command that arrived on its connection before the
    // command's turn: the task does not exist yet, so it waits here (at most
    // FirstBurstLength per command, and the window bounds the commands).
    struct HeldDataOut {
      pdu::ReceivedPdu pdu;
      IoBuffer data_buffer;  // holds pdu.data when the transport handed its buffer over
    };
    std::vector<HeldDataOut> data_out;
  };
  std::map<uint32_t, Pending> reorder;

  std::vector<Connection*> connections;
  // ITT -> task; ITTs are unique within a session.
  std::unordered_map<uint32_t, std::unique_ptr<Task>> tasks;

  bool logging_out = false;
};

}  // namespace iser::target

#endif  // ISER_TARGET_SESSION_H_
