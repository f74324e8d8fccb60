// The read-modify-write commands, COMPARE AND WRITE (SBC-3 5.2) and ORWRITE(16)
// (SBC-3 5.8). Atomic with respect to each other on the same LU: they run one at a time
// through LogicalUnit::RunCaw().
#include <algorithm>
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
  // The data-out must be exactly verify + write data (a NUMBER OF LOGICAL BLOCKS of 256
  // wraps to 0 in the CDB; libiscsi then sends 256 blocks and expects INVALID FIELD).
  if (cmd->task.data_out.size() != uint64_t(2) * blocks * bs ||
      (cmd->task.expected_transfer_length != 0 &&
       cmd->task.expected_transfer_length != 2 * blocks * bs)) {
    FailCdbField(std::move(cmd), 13);
    return;
  }
  if (blocks == 0) {
    Complete(std::move(cmd));
    return;
  }
  auto post = cmd->task.post_to_owner;
  lu.RunCaw([cmd = std::move(cmd), lba, blocks,
             fua]() mutable { RunCompareAndWrite(std::move(cmd), lba, blocks, fua); },
            std::move(post));
}

namespace {

void RunOrWrite(CommandPtr cmd, uint64_t lba, uint64_t blocks, bool fua) {
  LogicalUnit* lu = cmd->lu;
  uint32_t bs = lu->block_size();
  uint64_t bytes = std::min<uint64_t>(blocks * bs, cmd->task.data_out.size() / bs * bs);
  if (bytes == 0) {
    Complete(std::move(cmd));
    lu->CawDone();
    return;
  }
  auto buf = std::make_shared<std::vector<uint8_t>>(bytes);
  lu->store().Read(lba * bs, std::span<uint8_t>(*buf),
                   [cmd = std::move(cmd), lu, buf, lba, bs, fua](absl::Status s) mutable {
                     if (!s.ok()) {
                       FailIo(std::move(cmd), s, false);
                       lu->CawDone();
                       return;
                     }
                     for (size_t i = 0; i < buf->size(); ++i) (*buf)[i] |= cmd->task.data_out[i];
                     lu->store().Write(lba * bs, std::span<const uint8_t>(*buf),
                                       EffectiveFua(*lu, fua),
                                       [cmd = std::move(cmd), lu, buf](absl::Status s) mutable {
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

void HandleOrWrite(CommandPtr cmd) {
  const uint8_t* cdb = cmd->cdb();
  LogicalUnit& lu = *cmd->lu;
  uint32_t bs = lu.block_size();
  uint8_t orprotect = cdb[1] >> 5;
  bool fua = cdb[1] & 0x08;
  uint64_t lba = Get64(cdb + 2);
  uint64_t blocks = Get32(cdb + 10);
  cmd->task.cdb_transfer_length = uint32_t(std::min<uint64_t>(blocks * bs, 0xffffffffu));
  if (lu.WriteProtected()) {
    Fail(std::move(cmd), sense::kWriteProtected);
    return;
  }
  if (orprotect) {
    FailCdbField(std::move(cmd), 1, 7);
    return;
  }
  if (!LbaRangeOk(lu, lba, blocks)) {
    Fail(std::move(cmd), sense::kLbaOutOfRange);
    return;
  }
  if (blocks > lu.limits().max_transfer_blocks) {
    FailCdbField(std::move(cmd), 10);
    return;
  }
  if (blocks == 0) {
    Complete(std::move(cmd));
    return;
  }
  auto post = cmd->task.post_to_owner;
  lu.RunCaw([cmd = std::move(cmd), lba, blocks,
             fua]() mutable { RunOrWrite(std::move(cmd), lba, blocks, fua); },
            std::move(post));
}

}  // namespace iser::scsi
