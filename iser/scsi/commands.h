// The command table: every operation code this device supports, its handler, how it
// behaves with unit attentions and reservations, and its CDB usage data (REPORT
// SUPPORTED OPERATION CODES). Anything not in the table is INVALID COMMAND OPERATION CODE.
#ifndef ISER_SCSI_COMMANDS_H_
#define ISER_SCSI_COMMANDS_H_

#include <array>
#include <cstdint>
#include <span>

#include "iser/scsi/command.h"
#include "iser/scsi/logical_unit.h"

namespace iser::scsi {

using Handler = void (*)(CommandPtr);

struct CommandDesc {
  uint8_t opcode = 0;
  int16_t service_action = -1;  // -1: the opcode has no service actions
  const char* name = "";
  Handler handler = nullptr;  // null: answered by Device (REPORT LUNS)
  Access access = Access::kAlways;
  bool reports_ua = true;     // false for INQUIRY, REPORT LUNS, REQUEST SENSE
  bool needs_medium = false;  // NOT READY when the LU is stopped
  uint8_t cdb_size = 0;
  std::array<uint8_t, 16> usage{};  // CDB usage data; usage[0] == opcode
};

// Where the service action lives for opcodes that have them; -1 otherwise.
int ServiceActionOf(std::span<const uint8_t> cdb);

// Looks up the command; `opcode_known` tells a bad service action from a bad opcode.
const CommandDesc* FindCommand(uint8_t opcode, int service_action, bool* opcode_known);
std::span<const CommandDesc> AllCommands();
bool OpcodeHasServiceActions(uint8_t opcode);

// ---- handlers (one file each area) ----
// spc.cc
void HandleTestUnitReady(CommandPtr cmd);
void HandleRequestSense(CommandPtr cmd);
void HandleStartStopUnit(CommandPtr cmd);
void HandlePreventAllow(CommandPtr cmd);
void HandleReadDefectData(CommandPtr cmd);
void HandleReportSupportedOpcodes(CommandPtr cmd);
void HandleReportTargetPortGroups(CommandPtr cmd);
// inquiry.cc
void HandleInquiry(CommandPtr cmd);
// INQUIRY to a LUN that does not exist: peripheral qualifier 011b.
void HandleInquiryNoLun(CommandPtr cmd);
// mode_pages.cc
void HandleModeSense(CommandPtr cmd);
void HandleModeSelect(CommandPtr cmd);
// sbc_rw.cc
void HandleRead(CommandPtr cmd);
void HandleWrite(CommandPtr cmd);
void HandleVerify(CommandPtr cmd);
void HandleWriteVerify(CommandPtr cmd);
// sbc_misc.cc
void HandleReadCapacity10(CommandPtr cmd);
void HandleReadCapacity16(CommandPtr cmd);
void HandleGetLbaStatus(CommandPtr cmd);
void HandleSynchronizeCache(CommandPtr cmd);
void HandlePreFetch(CommandPtr cmd);
void HandleUnmap(CommandPtr cmd);
void HandleWriteSame(CommandPtr cmd);
// compare_and_write.cc
void HandleCompareAndWrite(CommandPtr cmd);
void HandleOrWrite(CommandPtr cmd);
// persistent_reservations.cc
void HandlePersistentReserveIn(CommandPtr cmd);
void HandlePersistentReserveOut(CommandPtr cmd);
void HandleReserve(CommandPtr cmd);
void HandleRelease(CommandPtr cmd);

}  // namespace iser::scsi

#endif  // ISER_SCSI_COMMANDS_H_
