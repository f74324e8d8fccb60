// Small SPC/SBC commands: TEST UNIT READY, REQUEST SENSE, START STOP UNIT, PREVENT ALLOW
// MEDIUM REMOVAL, READ DEFECT DATA, REPORT SUPPORTED OPERATION CODES and REPORT TARGET
// PORT GROUPS.
#include <vector>

#include "iser/scsi/cdb.h"
#include "iser/scsi/commands.h"
#include "iser/scsi/logical_unit.h"

namespace iser::scsi {

void HandleTestUnitReady(CommandPtr cmd) { Complete(std::move(cmd)); }

void HandleRequestSense(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  bool desc = cdb[1] & 0x01;
  uint8_t alloc = cdb[4];
  LogicalUnit& lu = *cmd->lu;
  SenseCode code = sense::kNoSense;
  if (std::optional<SenseCode> ua = lu.PopUa(cmd->nexus_key)) {
    code = *ua;
  } else if (!lu.started()) {
    code = sense::kNotReadyStartUnitRequired;
  }
  std::vector<uint8_t> s = BuildSense(code, desc);
  ReturnData(std::move(cmd), s, alloc);
}

void HandleStartStopUnit(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  uint8_t power_condition = cdb[4] >> 4;
  bool loej = cdb[4] & 0x02;
  bool start = cdb[4] & 0x01;
  LogicalUnit& lu = *cmd->lu;
  if (power_condition != 0) {
    // Power conditions are accepted and have no effect; START and LOEJ are ignored.
    Complete(std::move(cmd));
    return;
  }
  if (loej) {
    // The medium is not removable (RMB = 0).
    if (!start && lu.PreventRemoval()) {
      Fail(std::move(cmd), sense::kMediumRemovalPrevented);
      return;
    }
    FailCdbField(std::move(cmd), 4, 1);
    return;
  }
  lu.set_started(start);
  Complete(std::move(cmd));
}

void HandlePreventAllow(CommandPtr cmd) {
  uint8_t prevent = cmd->cdb()[4] & 0x03;
  if (prevent > 1) {
    FailCdbField(std::move(cmd), 4, 1);
    return;
  }
  cmd->lu->SetPrevent(cmd->nexus_key, prevent == 1);
  Complete(std::move(cmd));
}

void HandleReadDefectData(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  bool twelve = cdb[0] == op::kReadDefectData12;
  uint8_t flags = twelve ? cdb[1] : cdb[2];
  uint32_t alloc = twelve ? Get32(cdb + 6) : Get16(cdb + 7);
  // An empty defect list in the requested format.
  std::vector<uint8_t> d(twelve ? 8 : 4, 0);
  d[1] = flags & 0x1f;  // REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT echoed
  ReturnData(std::move(cmd), d, alloc);
}

namespace {

constexpr uint32_t kNominalTimeoutSeconds = 30;
constexpr uint32_t kRecommendedTimeoutSeconds = 60;

void AppendTimeouts(std::vector<uint8_t>& d) {
  uint8_t t[12] = {};
  Put16(t, 0x0a);
  Put32(t + 4, kNominalTimeoutSeconds);
  Put32(t + 8, kRecommendedTimeoutSeconds);
  d.insert(d.end(), t, t + sizeof(t));
}

}  // namespace

void HandleReportSupportedOpcodes(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  bool rctd = cdb[2] & 0x80;
  uint8_t options = cdb[2] & 0x07;
  uint8_t req_op = cdb[3];
  uint16_t req_sa = Get16(cdb + 4);
  uint32_t alloc = Get32(cdb + 6);
  std::vector<uint8_t> d;
  if (options == 0) {
    d.assign(4, 0);
    for (const CommandDesc& c : AllCommands()) {
      uint8_t e[8] = {};
      e[0] = c.opcode;
      if (c.service_action >= 0) {
        Put16(e + 2, uint16_t(c.service_action));
        e[5] |= 0x01;  // SERVACTV
      }
      if (rctd) e[5] |= 0x02;  // CTDP
      Put16(e + 6, c.cdb_size);
      d.insert(d.end(), e, e + sizeof(e));
      if (rctd) AppendTimeouts(d);
    }
    Put32(d.data(), uint32_t(d.size() - 4));
    ReturnData(std::move(cmd), d, alloc);
    return;
  }
  if (options > 3) {
    FailCdbField(std::move(cmd), 2, 2);
    return;
  }
  bool has_sa = OpcodeHasServiceActions(req_op);
  if (options == 1 && has_sa) {
    FailCdbField(std::move(cmd), 3);
    return;
  }
  if (options == 2 && !has_sa) {
    FailCdbField(std::move(cmd), 3);
    return;
  }
  const CommandDesc* found = nullptr;
  for (const CommandDesc& c : AllCommands()) {
    if (c.opcode != req_op) continue;
    if (has_sa && options != 1 && c.service_action != req_sa) continue;
    found = &c;
    break;
  }
  d.assign(4, 0);
  if (found == nullptr) {
    d[1] = 0x01;  // SUPPORT: not supported
  } else {
    d[1] = 0x03;             // SUPPORT: supported as described
    if (rctd) d[1] |= 0x80;  // CTDP
    Put16(&d[2], found->cdb_size);
    d.insert(d.end(), found->usage.begin(), found->usage.begin() + found->cdb_size);
    if (rctd) AppendTimeouts(d);
  }
  ReturnData(std::move(cmd), d, alloc);
}

void HandleReportTargetPortGroups(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  bool extended = ((cdb[1] >> 5) & 0x07) == 1;
  uint32_t alloc = Get32(cdb + 6);
  uint16_t tpg = cmd->task.nexus ? cmd->task.nexus->target_portal_group_tag : 1;
  uint16_t rtpi = cmd->task.nexus ? cmd->task.nexus->relative_target_port : 1;
  std::vector<uint8_t> d(extended ? 8 : 4, 0);
  if (extended) {
    d[4] = 0x10;  // FORMAT TYPE 1
  }
  // One target port group: active/optimized, supports only that state.
  uint8_t g[8] = {};
  g[0] = 0x80 | 0x00;  // PREF, ASYMMETRIC ACCESS STATE = active/optimized
  g[1] = 0x01;         // AO_SUP
  Put16(g + 2, tpg);
  g[5] = 0x00;  // STATUS CODE
  g[7] = 1;     // TARGET PORT COUNT
  d.insert(d.end(), g, g + sizeof(g));
  uint8_t p[4] = {};
  Put16(p + 2, rtpi);
  d.insert(d.end(), p, p + sizeof(p));
  Put32(d.data(), uint32_t(d.size() - 4));
  ReturnData(std::move(cmd), d, alloc);
}

}  // namespace iser::scsi
