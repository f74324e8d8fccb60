#include "iser/scsi/commands.h"

#include "iser/scsi/cdb.h"

namespace iser::scsi {

namespace {

using A = Access;

// clang-format off
const CommandDesc kCommands[] = {
  {op::kTestUnitReady, -1, "TEST UNIT READY", HandleTestUnitReady, A::kNoData, true, true, 6,
   {0x00, 0, 0, 0, 0, 0x04}},
  {op::kRequestSense, -1, "REQUEST SENSE", HandleRequestSense, A::kAlways, false, false, 6,
   {0x03, 0x01, 0, 0, 0xff, 0x04}},
  {op::kRead6, -1, "READ(6)", HandleRead, A::kRead, true, true, 6,
   {0x08, 0x1f, 0xff, 0xff, 0xff, 0x04}},
  {op::kWrite6, -1, "WRITE(6)", HandleWrite, A::kWrite, true, true, 6,
   {0x0a, 0x1f, 0xff, 0xff, 0xff, 0x04}},
  {op::kInquiry, -1, "INQUIRY", HandleInquiry, A::kAlways, false, false, 6,
   {0x12, 0x01, 0xff, 0xff, 0xff, 0x04}},
  {op::kModeSelect6, -1, "MODE SELECT(6)", HandleModeSelect, A::kWrite, true, false, 6,
   {0x15, 0x11, 0, 0, 0xff, 0x04}},
  {op::kReserve6, -1, "RESERVE(6)", HandleReserve, A::kReserve, true, false, 6,
   {0x16, 0, 0, 0, 0, 0x04}},
  {op::kRelease6, -1, "RELEASE(6)", HandleRelease, A::kReserve, true, false, 6,
   {0x17, 0, 0, 0, 0, 0x04}},
  {op::kModeSense6, -1, "MODE SENSE(6)", HandleModeSense, A::kRead, true, false, 6,
   {0x1a, 0x08, 0xff, 0xff, 0xff, 0x04}},
  {op::kStartStopUnit, -1, "START STOP UNIT", HandleStartStopUnit, A::kWrite, true, false, 6,
   {0x1b, 0x01, 0, 0x0f, 0xf7, 0x04}},
  {op::kPreventAllow, -1, "PREVENT ALLOW MEDIUM REMOVAL", HandlePreventAllow, A::kWrite, true,
   false, 6, {0x1e, 0, 0, 0, 0x03, 0x04}},
  {op::kReadCapacity10, -1, "READ CAPACITY(10)", HandleReadCapacity10, A::kNoData, true, true,
   10, {0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0x04}},
  {op::kRead10, -1, "READ(10)", HandleRead, A::kRead, true, true, 10,
   {0x28, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x04}},
  {op::kWrite10, -1, "WRITE(10)", HandleWrite, A::kWrite, true, true, 10,
   {0x2a, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x04}},
  {op::kWriteVerify10, -1, "WRITE AND VERIFY(10)", HandleWriteVerify, A::kWrite, true, true, 10,
   {0x2e, 0xf2, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x04}},
  {op::kVerify10, -1, "VERIFY(10)", HandleVerify, A::kRead, true, true, 10,
   {0x2f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x04}},
  {op::kPreFetch10, -1, "PRE-FETCH(10)", HandlePreFetch, A::kRead, true, true, 10,
   {0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x04}},
  {op::kSynchronizeCache10, -1, "SYNCHRONIZE CACHE(10)", HandleSynchronizeCache, A::kWrite,
   true, true, 10, {0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x04}},
  {op::kReadDefectData10, -1, "READ DEFECT DATA(10)", HandleReadDefectData, A::kRead, true,
   true, 10, {0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0x04}},
  {op::kWriteSame10, -1, "WRITE SAME(10)", HandleWriteSame, A::kWrite, true, true, 10,
   {0x41, 0xf8, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x04}},
  {op::kUnmap, -1, "UNMAP", HandleUnmap, A::kWrite, true, true, 10,
   {0x42, 0x01, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0x04}},
  {op::kModeSelect10, -1, "MODE SELECT(10)", HandleModeSelect, A::kWrite, true, false, 10,
   {0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0x04}},
  {op::kReserve10, -1, "RESERVE(10)", HandleReserve, A::kReserve, true, false, 10,
   {0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0x04}},
  {op::kRelease10, -1, "RELEASE(10)", HandleRelease, A::kReserve, true, false, 10,
   {0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0x04}},
  {op::kModeSense10, -1, "MODE SENSE(10)", HandleModeSense, A::kRead, true, false, 10,
   {0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0x04}},
  {op::kPersistentReserveIn, 0x00, "PERSISTENT RESERVE IN/READ KEYS", HandlePersistentReserveIn,
   A::kAlways, true, false, 10, {0x5e, 0x00, 0, 0, 0, 0, 0, 0xff, 0xff, 0x04}},
  {op::kPersistentReserveIn, 0x01, "PERSISTENT RESERVE IN/READ RESERVATION",
   HandlePersistentReserveIn, A::kAlways, true, false, 10,
   {0x5e, 0x01, 0, 0, 0, 0, 0, 0xff, 0xff, 0x04}},
  {op::kPersistentReserveIn, 0x02, "PERSISTENT RESERVE IN/REPORT CAPABILITIES",
   HandlePersistentReserveIn, A::kAlways, true, false, 10,
   {0x5e, 0x02, 0, 0, 0, 0, 0, 0xff, 0xff, 0x04}},
  {op::kPersistentReserveIn, 0x03, "PERSISTENT RESERVE IN/READ FULL STATUS",
   HandlePersistentReserveIn, A::kAlways, true, false, 10,
   {0x5e, 0x03, 0, 0, 0, 0, 0, 0xff, 0xff, 0x04}},
  {op::kPersistentReserveOut, 0x00, "PERSISTENT RESERVE OUT/REGISTER", HandlePersistentReserveOut,
   A::kPrOut, true, false, 10, {0x5f, 0x00, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x04}},
  {op::kPersistentReserveOut, 0x01, "PERSISTENT RESERVE OUT/RESERVE", HandlePersistentReserveOut,
   A::kPrOut, true, false, 10, {0x5f, 0x01, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x04}},
  {op::kPersistentReserveOut, 0x02, "PERSISTENT RESERVE OUT/RELEASE", HandlePersistentReserveOut,
   A::kPrOut, true, false, 10, {0x5f, 0x02, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x04}},
  {op::kPersistentReserveOut, 0x03, "PERSISTENT RESERVE OUT/CLEAR", HandlePersistentReserveOut,
   A::kPrOut, true, false, 10, {0x5f, 0x03, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x04}},
  {op::kPersistentReserveOut, 0x04, "PERSISTENT RESERVE OUT/PREEMPT", HandlePersistentReserveOut,
   A::kPrOut, true, false, 10, {0x5f, 0x04, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x04}},
  {op::kPersistentReserveOut, 0x05, "PERSISTENT RESERVE OUT/PREEMPT AND ABORT",
   HandlePersistentReserveOut, A::kPrOut, true, false, 10,
   {0x5f, 0x05, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x04}},
  {op::kPersistentReserveOut, 0x06, "PERSISTENT RESERVE OUT/REGISTER AND IGNORE EXISTING KEY",
   HandlePersistentReserveOut, A::kPrOut, true, false, 10,
   {0x5f, 0x06, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x04}},
  {op::kRead16, -1, "READ(16)", HandleRead, A::kRead, true, true, 16,
   {0x88, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f,
    0x04}},
  {op::kCompareAndWrite, -1, "COMPARE AND WRITE", HandleCompareAndWrite, A::kWrite, true, true,
   16, {0x89, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x1f, 0x04}},
  {op::kWrite16, -1, "WRITE(16)", HandleWrite, A::kWrite, true, true, 16,
   {0x8a, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f,
    0x04}},
  {op::kOrWrite16, -1, "ORWRITE(16)", HandleOrWrite, A::kWrite, true, true, 16,
   {0x8b, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f,
    0x04}},
  {op::kWriteVerify16, -1, "WRITE AND VERIFY(16)", HandleWriteVerify, A::kWrite, true, true, 16,
   {0x8e, 0xf2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f,
    0x04}},
  {op::kVerify16, -1, "VERIFY(16)", HandleVerify, A::kRead, true, true, 16,
   {0x8f, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f,
    0x04}},
  {op::kPreFetch16, -1, "PRE-FETCH(16)", HandlePreFetch, A::kRead, true, true, 16,
   {0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f,
    0x04}},
  {op::kSynchronizeCache16, -1, "SYNCHRONIZE CACHE(16)", HandleSynchronizeCache, A::kWrite, true,
   true, 16, {0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
              0x1f, 0x04}},
  {op::kWriteSame16, -1, "WRITE SAME(16)", HandleWriteSame, A::kWrite, true, true, 16,
   {0x93, 0xf9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f,
    0x04}},
  {op::kServiceActionIn16, op::kSaReadCapacity16, "READ CAPACITY(16)", HandleReadCapacity16,
   A::kNoData, true, true, 16,
   {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x04}},
  {op::kServiceActionIn16, op::kSaGetLbaStatus, "GET LBA STATUS", HandleGetLbaStatus, A::kRead,
   true, true, 16,
   {0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
    0x04}},
  {op::kReportLuns, -1, "REPORT LUNS", nullptr, A::kAlways, false, false, 12,
   {0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x04}},
  {op::kMaintenanceIn, op::kSaReportTargetPortGroups, "REPORT TARGET PORT GROUPS",
   HandleReportTargetPortGroups, A::kAlways, true, false, 12,
   {0xa3, 0x0a, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x04}},
  {op::kMaintenanceIn, op::kSaReportSupportedOpcodes, "REPORT SUPPORTED OPERATION CODES",
   HandleReportSupportedOpcodes, A::kAlways, true, false, 12,
   {0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x04}},
  {op::kRead12, -1, "READ(12)", HandleRead, A::kRead, true, true, 12,
   {0xa8, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x04}},
  {op::kWrite12, -1, "WRITE(12)", HandleWrite, A::kWrite, true, true, 12,
   {0xaa, 0xf8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x04}},
  {op::kWriteVerify12, -1, "WRITE AND VERIFY(12)", HandleWriteVerify, A::kWrite, true, true, 12,
   {0xae, 0xf2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x04}},
  {op::kVerify12, -1, "VERIFY(12)", HandleVerify, A::kRead, true, true, 12,
   {0xaf, 0xf6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x04}},
  {op::kReadDefectData12, -1, "READ DEFECT DATA(12)", HandleReadDefectData, A::kRead, true, true,
   12, {0xb7, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x04}},
};
// clang-format on

}  // namespace

bool OpcodeHasServiceActions(uint8_t opcode) {
  return opcode == op::kServiceActionIn16 || opcode == op::kMaintenanceIn ||
         opcode == op::kPersistentReserveIn || opcode == op::kPersistentReserveOut;
}

int ServiceActionOf(std::span<const uint8_t> cdb) {
  if (cdb.size() < 2 || !OpcodeHasServiceActions(cdb[0])) return -1;
  return cdb[1] & 0x1f;
}

const CommandDesc* FindCommand(uint8_t opcode, int service_action, bool* opcode_known) {
  *opcode_known = false;
  for (const CommandDesc& d : kCommands) {
    if (d.opcode != opcode) continue;
    *opcode_known = true;
    if (d.service_action == service_action || d.service_action < 0) return &d;
  }
  return nullptr;
}

std::span<const CommandDesc> AllCommands() { return kCommands; }

}  // namespace iser::scsi
