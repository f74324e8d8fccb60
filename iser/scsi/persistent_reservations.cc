// PERSISTENT RESERVE IN/OUT (SPC-4 6.15, 6.16, 5.13) and RESERVE/RELEASE(6/10) (SPC-2).
#include "iser/scsi/cdb.h"
#include "iser/scsi/commands.h"
#include "iser/scsi/logical_unit.h"

namespace iser::scsi {

void HandlePersistentReserveIn(CommandPtr cmd) { Fail(std::move(cmd), sense::kInvalidOpcode); }
void HandlePersistentReserveOut(CommandPtr cmd) { Fail(std::move(cmd), sense::kInvalidOpcode); }
void HandleReserve(CommandPtr cmd) { Fail(std::move(cmd), sense::kInvalidOpcode); }
void HandleRelease(CommandPtr cmd) { Fail(std::move(cmd), sense::kInvalidOpcode); }

}  // namespace iser::scsi
