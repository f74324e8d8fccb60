// Helpers shared by the SBC handlers: CDB decoding for the READ/WRITE family, LBA range
// checks and store error mapping.
#ifndef ISER_SCSI_SBC_COMMON_H_
#define ISER_SCSI_SBC_COMMON_H_

#include <cstdint>

#include "absl/status/status.h"
#include "iser/scsi/command.h"
#include "iser/scsi/logical_unit.h"

namespace iser::scsi {

// The fields of a READ/WRITE/VERIFY/WRITE AND VERIFY/PRE-FETCH/SYNCHRONIZE CACHE CDB.
struct RwCdb {
  uint64_t lba = 0;
  uint64_t blocks = 0;
  uint8_t protect = 0;  // RDPROTECT / WRPROTECT / VRPROTECT
  bool dpo = false;
  bool fua = false;
  uint8_t bytchk = 0;  // VERIFY: bits 2-1; WRITE AND VERIFY: bit 1
  bool immed = false;  // PRE-FETCH / SYNCHRONIZE CACHE
};

// Decodes by CDB size (6/10/12/16). For 6-byte CDBs a length of 0 means 256 blocks.
RwCdb ParseRwCdb(const uint8_t* cdb);

// True if [lba, lba + blocks) lies within the medium (lba == capacity with 0 blocks is ok).
inline bool LbaRangeOk(const LogicalUnit& lu, uint64_t lba, uint64_t blocks) {
  uint64_t cap = lu.num_blocks();
  return lba <= cap && blocks <= cap - lba;
}

// Finishes `cmd` with the CHECK CONDITION matching a failed store call.
void FailIo(CommandPtr cmd, const absl::Status& status, bool write);

// Writes go to the medium with FUA when asked, and always when the write cache is off.
bool EffectiveFua(const LogicalUnit& lu, bool fua);

}  // namespace iser::scsi

#endif  // ISER_SCSI_SBC_COMMON_H_
