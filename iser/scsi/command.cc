#include "iser/scsi/command.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace iser::scsi {

std::string NexusKey(const ItNexus& nexus) {
  std::string port = nexus.initiator_port;
  if (port.empty()) {
    port = absl::StrCat(nexus.initiator_name, ",i,0x", absl::StrFormat("%012x", nexus.isid));
  }
  return absl::StrCat(port, "|", nexus.relative_target_port);
}

namespace {
void Finish(CommandPtr cmd) {
  auto done = std::move(cmd->done);
  cmd.reset();
  done();
}
}  // namespace

void Complete(CommandPtr cmd) {
  cmd->task.status = ScsiStatus::kGood;
  cmd->task.sense.clear();
  Finish(std::move(cmd));
}

void Fail(CommandPtr cmd, SenseCode code, const SenseDetail& detail) {
  cmd->task.status = ScsiStatus::kCheckCondition;
  cmd->task.sense = BuildSense(code, cmd->descriptor_sense, detail);
  cmd->task.data_in_length = 0;
  Finish(std::move(cmd));
}

void FailCdbField(CommandPtr cmd, uint16_t byte, std::optional<uint8_t> bit) {
  Fail(std::move(cmd), sense::kInvalidFieldInCdb,
       SenseDetail{.field = FieldPointer{.in_cdb = true, .byte = byte, .bit = bit}});
}

void FailParamField(CommandPtr cmd, uint16_t byte, std::optional<uint8_t> bit) {
  Fail(std::move(cmd), sense::kInvalidFieldInParameterList,
       SenseDetail{.field = FieldPointer{.in_cdb = false, .byte = byte, .bit = bit}});
}

void Conflict(CommandPtr cmd) {
  cmd->task.status = ScsiStatus::kReservationConflict;
  cmd->task.sense.clear();
  cmd->task.data_in_length = 0;
  Finish(std::move(cmd));
}

void SendData(Command& cmd, std::span<const uint8_t> data) {
  size_t n = std::min(data.size(), cmd.task.data_in.size());
  if (n > 0) std::memcpy(cmd.task.data_in.data(), data.data(), n);
  cmd.task.data_in_length = uint32_t(n);
  cmd.task.cdb_transfer_length = uint32_t(data.size());
}

void ReturnData(CommandPtr cmd, std::span<const uint8_t> data, uint32_t allocation_length) {
  SendData(*cmd, data.first(std::min<size_t>(data.size(), allocation_length)));
  Complete(std::move(cmd));
}

}  // namespace iser::scsi
