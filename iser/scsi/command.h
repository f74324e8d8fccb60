// One command in flight inside the device: the task, the LU it addresses and the
// completion. Handlers take ownership (CommandPtr) and finish it exactly once with
// Complete(), Fail() or Conflict(); asynchronous store callbacks carry the pointer.
#ifndef ISER_SCSI_COMMAND_H_
#define ISER_SCSI_COMMAND_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/functional/any_invocable.h"
#include "iser/scsi/scsi_device.h"
#include "iser/scsi/sense.h"

namespace iser::scsi {

class LogicalUnit;
struct CommandDesc;

struct Command {
  Command(ScsiTask& t, absl::AnyInvocable<void()> d) : task(t), done(std::move(d)) {}

  ScsiTask& task;
  absl::AnyInvocable<void()> done;
  LogicalUnit* lu = nullptr;  // null for commands to a LUN that does not exist
  const CommandDesc* desc = nullptr;
  std::string nexus_key;          // identifies the I_T nexus (see NexusKey())
  bool descriptor_sense = false;  // D_SENSE when the command started

  const uint8_t* cdb() const { return task.cdb.data(); }
  size_t cdb_size() const { return task.cdb.size(); }
};
using CommandPtr = std::unique_ptr<Command>;

// Key identifying an I_T nexus for reservations and unit attentions.
std::string NexusKey(const ItNexus& nexus);

// Finishes with GOOD status.
void Complete(CommandPtr cmd);
// Finishes with CHECK CONDITION and the given sense.
void Fail(CommandPtr cmd, SenseCode code, const SenseDetail& detail = {});
// INVALID FIELD IN CDB with a field pointer at `byte` (and optionally `bit`).
void FailCdbField(CommandPtr cmd, uint16_t byte, std::optional<uint8_t> bit = std::nullopt);
// INVALID FIELD IN PARAMETER LIST with a field pointer.
void FailParamField(CommandPtr cmd, uint16_t byte, std::optional<uint8_t> bit = std::nullopt);
void Conflict(CommandPtr cmd);

// Places `data` (what the command would return with an unlimited buffer, already cut to
// the CDB's allocation length) into data_in, truncated to the transport's buffer.
// Sets data_in_length and cdb_transfer_length = data.size().
void SendData(Command& cmd, std::span<const uint8_t> data);

// Cuts `data` to `allocation_length` then SendData()s it and completes GOOD.
void ReturnData(CommandPtr cmd, std::span<const uint8_t> data, uint32_t allocation_length);

}  // namespace iser::scsi

#endif  // ISER_SCSI_COMMAND_H_
