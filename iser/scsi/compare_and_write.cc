// COMPARE AND WRITE (SBC-3 5.2). Atomic with respect to other COMPARE AND WRITE commands
// on the same LU: they run one at a time through LogicalUnit::RunCaw().
#include <memory>
#include <vector>

#include "iser/scsi/cdb.h"
#include "iser/scsi/commands.h"
#include "iser/scsi/logical_unit.h"
#include "iser/scsi/sbc_common.h"

namespace iser::scsi {

namespace {

void RunCompareAndWrite(CommandPtr cmd, uint64_t lba, uint32_t blocks, bool fua) {
  LogicalUnit* lu = cmd->lu;
  uint32_t bs = lu->block_size();
  uint64_t bytes = uint64_t(blocks) * bs;
  auto medium = std::make_shared<std::vector<uint8_t>>(bytes);
  lu->store().Read(lba * bs, std::span<uint8_t>(*medium),
                   [cmd = std::move(cmd), lu, medium, lba, bs, bytes, fua](absl::Status s) mutable {
                     if (!s.ok()) {
                       FailIo(std::move(cmd), s, false);
                       lu->CawDone();
                       return;
                     }
                     std::span<const uint8_t> verify = cmd->task.data_out.first(bytes);
                     for (size_t i = 0; i < bytes; ++i) {
                       if (verify[i] != (*medium)[i]) {
                         Fail(std::move(cmd), sense::kMiscompareDuringVerify,
                              SenseDetail{.information = i});
                         lu->CawDone();
                         return;
                       }
                     }
                     std::span<const uint8_t> data = cmd->task.data_out.subspan(bytes, bytes);
                     lu->store().Write(lba * bs, data, EffectiveFua(*lu, fua),
                                       [cmd = std::move(cmd), lu](absl::Status s) mutable {
                                         if (!s.ok()) {
                                           FailIo(std::move(cmd), s, true);
                                         } else {
                                           Complete(std::move(cmd));
                                         }
                                         lu->CawDone();
                                       });
                   });
}

}  // namespace

void HandleCompareAndWrite(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  LogicalUnit& lu = *cmd->lu;
  uint32_t bs = lu.block_size();
  uint8_t wrprotect = cdb[1] >> 5;
  bool fua = cdb[1] & 0x08;
  uint64_t lba = Get64(cdb + 2);
  uint32_t blocks = cdb[13];
  cmd->task.cdb_transfer_length = 2 * blocks * bs;
  if (lu.WriteProtected()) {
    Fail(std::move(cmd), sense::kWriteProtected);
    return;
  }
  if (wrprotect) {
    FailCdbField(std::move(cmd), 1, 7);
    return;
  }
  if (blocks > lu.limits().max_compare_write_blocks) {
    FailCdbField(std::move(cmd), 13);
    return;
  }
  if (!LbaRangeOk(lu, lba, blocks)) {
    Fail(std::move(cmd), sense::kLbaOutOfRange);
    return;
  }
  if (blocks == 0) {
    Complete(std::move(cmd));
    return;
  }
  if (cmd->task.data_out.size() != uint64_t(2) * blocks * bs ||
      (cmd->task.expected_transfer_length != 0 &&
       cmd->task.expected_transfer_length != 2 * blocks * bs)) {
    Fail(std::move(cmd), sense::kInvalidFieldInCdb);
    return;
  }
  auto post = cmd->task.post_to_owner;
  lu.RunCaw([cmd = std::move(cmd), lba, blocks,
             fua]() mutable { RunCompareAndWrite(std::move(cmd), lba, blocks, fua); },
            std::move(post));
}

}  // namespace iser::scsi
