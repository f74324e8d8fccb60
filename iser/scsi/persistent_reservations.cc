// PERSISTENT RESERVE IN/OUT (SPC-4 5.13, 6.15, 6.16) and RESERVE/RELEASE(6/10) (SPC-2).
//
// State lives in LogicalUnit::pr / spc2_holder under LogicalUnit::mu; no store calls are
// made here, so each command runs entirely under the lock. Reservations are not persisted
// across power loss (PTPL_C = 0): APTPL = 1 is rejected.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "iser/scsi/cdb.h"
#include "iser/scsi/commands.h"
#include "iser/scsi/logical_unit.h"

namespace iser::scsi {

namespace {

enum PrInAction : uint8_t {
  kReadKeys = 0,
  kReadReservation = 1,
  kReportCapabilities = 2,
  kReadFullStatus = 3
};
enum PrOutAction : uint8_t {
  kRegister = 0,
  kReserve = 1,
  kRelease = 2,
  kClear = 3,
  kPreempt = 4,
  kPreemptAndAbort = 5,
  kRegisterAndIgnore = 6,
};

bool ValidType(uint8_t t) { return t == 1 || t == 3 || t == 5 || t == 6 || t == 7 || t == 8; }

// iSCSI TransportID, format 01b: "<name>,i,0x<isid>" (SPC-4 7.6.4.6).
std::vector<uint8_t> TransportId(const std::string& initiator_port) {
  std::vector<uint8_t> id(4, 0);
  id[0] = 0x40 | 0x05;
  std::vector<uint8_t> name(initiator_port.begin(), initiator_port.end());
  name.push_back(0);
  while (name.size() % 4 || name.size() < 20) name.push_back(0);
  Put16(&id[2], uint16_t(name.size()));
  id.insert(id.end(), name.begin(), name.end());
  return id;
}

// Outcome of a PR OUT evaluated under the lock; applied to the task after unlocking.
struct Outcome {
  enum Kind { kGood, kConflict, kCheck } kind = kGood;
  SenseCode code{};
  std::optional<FieldPointer> field;
  // Unit attentions to establish once the lock is dropped.
  std::vector<std::pair<std::string, SenseCode>> uas;

  static Outcome Good() { return {}; }
  static Outcome Conflict() {
    Outcome o;
    o.kind = kConflict;
    return o;
  }
  static Outcome Check(SenseCode c, std::optional<FieldPointer> f = std::nullopt) {
    Outcome o;
    o.kind = kCheck;
    o.code = c;
    o.field = f;
    return o;
  }
};

FieldPointer CdbField(uint16_t byte, std::optional<uint8_t> bit = std::nullopt) {
  return FieldPointer{.in_cdb = true, .byte = byte, .bit = bit};
}
FieldPointer ParamField(uint16_t byte, std::optional<uint8_t> bit = std::nullopt) {
  return FieldPointer{.in_cdb = false, .byte = byte, .bit = bit};
}

void Finish(CommandPtr cmd, Outcome o) {
  for (auto& [nexus, code] : o.uas) cmd->lu->AddUa(nexus, code);
  switch (o.kind) {
    case Outcome::kGood:
      Complete(std::move(cmd));
      return;
    case Outcome::kConflict:
      Conflict(std::move(cmd));
      return;
    case Outcome::kCheck:
      Fail(std::move(cmd), o.code, SenseDetail{.field = o.field});
      return;
  }
}

// Removes `nexus`'s registration, releasing the reservation where SPC-4 5.13.11.2.3 says.
void Unregister(PrState& pr, const std::string& nexus, Outcome& o) {
  auto it = std::find_if(pr.registrations.begin(), pr.registrations.end(),
                         [&](const PrRegistration& r) { return r.nexus_key == nexus; });
  if (it == pr.registrations.end()) return;
  pr.registrations.erase(it);
  if (!pr.reserved) return;
  if (pr.AllRegistrants()) {
    if (pr.registrations.empty()) pr.reserved = false;
    return;
  }
  if (pr.holder == nexus) {
    pr.reserved = false;
    if (pr.type == PrType::kWriteExclusiveRegistrantsOnly ||
        pr.type == PrType::kExclusiveAccessRegistrantsOnly) {
      for (const PrRegistration& r : pr.registrations) {
        o.uas.push_back({r.nexus_key, sense::kReservationsReleased});
      }
    }
  }
}

// Removes every registration holding `key` except `keep`; returns how many matched.
size_t RemoveByKey(PrState& pr, uint64_t key, const std::string& keep, Outcome& o) {
  size_t matched = 0;
  std::vector<PrRegistration> kept;
  for (PrRegistration& r : pr.registrations) {
    if (r.key == key) {
      ++matched;
      if (r.nexus_key != keep) {
        o.uas.push_back({r.nexus_key, sense::kRegistrationsPreempted});
        continue;
      }
    }
    kept.push_back(std::move(r));
  }
  pr.registrations = std::move(kept);
  return matched;
}

Outcome Preempt(PrState& pr, const std::string& me, uint64_t sark, uint8_t scope, uint8_t type) {
  Outcome o;
  if (!pr.reserved ||
      (!pr.AllRegistrants() && pr.Find(pr.holder) && pr.Find(pr.holder)->key != sark)) {
    // Only registrations are preempted.
    if (sark == 0) return Outcome::Check(sense::kInvalidFieldInParameterList, ParamField(8));
    if (RemoveByKey(pr, sark, me, o) == 0) return Outcome::Conflict();
    ++pr.generation;
    return o;
  }
  if (scope != 0) return Outcome::Check(sense::kInvalidFieldInCdb, CdbField(2, 7));
  if (!ValidType(type)) return Outcome::Check(sense::kInvalidFieldInCdb, CdbField(2, 3));
  if (pr.AllRegistrants()) {
    if (sark != 0) {
      if (RemoveByKey(pr, sark, me, o) == 0) return Outcome::Conflict();
      ++pr.generation;
      return o;
    }
    // SARK 0 preempts every other registrant and takes the reservation.
    std::vector<PrRegistration> kept;
    for (PrRegistration& r : pr.registrations) {
      if (r.nexus_key == me) {
        kept.push_back(std::move(r));
      } else {
        o.uas.push_back({r.nexus_key, sense::kRegistrationsPreempted});
      }
    }
    pr.registrations = std::move(kept);
  } else {
    bool changed = pr.type != PrType(type);
    RemoveByKey(pr, sark, me, o);
    if (changed) {
      for (const PrRegistration& r : pr.registrations) {
        if (r.nexus_key != me) o.uas.push_back({r.nexus_key, sense::kReservationsReleased});
      }
    }
  }
  pr.reserved = true;
  pr.type = PrType(type);
  pr.holder = me;
  ++pr.generation;
  return o;
}

Outcome PrOut(LogicalUnit& lu, const Command& cmd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lu.mu) {
  const uint8_t* cdb = cmd.cdb();
  uint8_t action = cdb[1] & 0x1f;
  uint8_t scope = cdb[2] >> 4;
  uint8_t type = cdb[2] & 0x0f;
  uint32_t len = Get32(cdb + 5);
  std::span<const uint8_t> p = cmd.task.data_out;
  if (len != 24 || p.size() < 24) {
    return Outcome::Check(sense::kParameterListLengthError);
  }
  uint64_t rk = Get64(&p[0]);
  uint64_t sark = Get64(&p[8]);
  bool spec_i_pt = p[20] & 0x08;
  bool all_tg_pt = p[20] & 0x04;
  bool aptpl = p[20] & 0x01;
  if (spec_i_pt) return Outcome::Check(sense::kInvalidFieldInParameterList, ParamField(20, 3));
  if (all_tg_pt) return Outcome::Check(sense::kInvalidFieldInParameterList, ParamField(20, 2));
  if (aptpl) return Outcome::Check(sense::kInvalidFieldInParameterList, ParamField(20, 0));

  PrState& pr = lu.pr;
  const std::string& me = cmd.nexus_key;
  PrRegistration* reg = nullptr;
  for (PrRegistration& r : pr.registrations) {
    if (r.nexus_key == me) reg = &r;
  }
  Outcome o;
  if (action == kRegister || action == kRegisterAndIgnore) {
    if (action == kRegister && rk != (reg ? reg->key : 0)) return Outcome::Conflict();
    if (sark == 0) {
      if (reg) {
        Unregister(pr, me, o);
        ++pr.generation;
      }
      return o;
    }
    if (reg) {
      reg->key = sark;
    } else {
      PrRegistration r;
      r.nexus_key = me;
      r.key = sark;
      if (cmd.task.nexus) {
        r.initiator_port = cmd.task.nexus->initiator_port;
        r.relative_target_port = cmd.task.nexus->relative_target_port;
      }
      pr.registrations.push_back(std::move(r));
    }
    ++pr.generation;
    return o;
  }
  if (reg == nullptr || reg->key != rk) return Outcome::Conflict();
  switch (action) {
    case kReserve:
      if (scope != 0) return Outcome::Check(sense::kInvalidFieldInCdb, CdbField(2, 7));
      if (!ValidType(type)) return Outcome::Check(sense::kInvalidFieldInCdb, CdbField(2, 3));
      if (pr.reserved) {
        if (pr.IsHolder(me) && pr.type == PrType(type)) return o;
        return Outcome::Conflict();
      }
      pr.reserved = true;
      pr.type = PrType(type);
      pr.holder = me;
      return o;
    case kRelease:
      if (!pr.reserved || !pr.IsHolder(me)) return o;
      if (scope != 0 || pr.type != PrType(type)) {
        return Outcome::Check(sense::kInvalidReleaseOfPr);
      }
      pr.reserved = false;
      if (pr.type != PrType::kWriteExclusive && pr.type != PrType::kExclusiveAccess) {
        for (const PrRegistration& r : pr.registrations) {
          if (r.nexus_key != me) o.uas.push_back({r.nexus_key, sense::kReservationsReleased});
        }
      }
      return o;
    case kClear:
      for (const PrRegistration& r : pr.registrations) {
        if (r.nexus_key != me) o.uas.push_back({r.nexus_key, sense::kReservationsPreempted});
      }
      pr.registrations.clear();
      pr.reserved = false;
      ++pr.generation;
      return o;
    case kPreempt:
    case kPreemptAndAbort:
      // PREEMPT AND ABORT: the preempted nexuses' tasks are not aborted here; the transport
      // does not expose its task sets to this layer.
      return Preempt(pr, me, sark, scope, type);
    default:
      return Outcome::Check(sense::kInvalidFieldInCdb, CdbField(1, 4));
  }
}

}  // namespace

void HandlePersistentReserveOut(CommandPtr cmd) {
  LogicalUnit& lu = *cmd->lu;
  cmd->task.cdb_transfer_length = Get32(cmd->cdb() + 5);
  Outcome o;
  {
    absl::MutexLock lock(&lu.mu);
    o = PrOut(lu, *cmd);
  }
  Finish(std::move(cmd), std::move(o));
}

void HandlePersistentReserveIn(CommandPtr cmd) {
  LogicalUnit& lu = *cmd->lu;
  const uint8_t* cdb = cmd->cdb();
  uint8_t action = cdb[1] & 0x1f;
  uint16_t alloc = Get16(cdb + 7);
  std::vector<uint8_t> d(8, 0);
  {
    absl::MutexLock lock(&lu.mu);
    const PrState& pr = lu.pr;
    Put32(&d[0], pr.generation);
    switch (action) {
      case kReadKeys:
        for (const PrRegistration& r : pr.registrations) {
          uint8_t k[8];
          Put64(k, r.key);
          d.insert(d.end(), k, k + 8);
        }
        break;
      case kReadReservation:
        if (pr.reserved) {
          uint8_t r[16] = {};
          if (!pr.AllRegistrants()) {
            const PrRegistration* h = pr.Find(pr.holder);
            Put64(r, h ? h->key : 0);
          }
          r[13] = uint8_t(pr.type);  // scope 0 (LU)
          d.insert(d.end(), r, r + 16);
        }
        break;
      case kReportCapabilities:
        d.assign(8, 0);
        Put16(&d[0], 8);
        d[2] = 0x10;         // CRH: RESERVE/RELEASE conflict with persistent reservations
        d[3] = 0x80 | 0x10;  // TMV, ALLOW COMMANDS = 001b
        d[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;  // WR_EX_AR EX_AC_RO WR_EX_RO EX_AC WR_EX
        d[5] = 0x01;                              // EX_AC_AR
        break;
      case kReadFullStatus:
        for (const PrRegistration& r : pr.registrations) {
          std::vector<uint8_t> e(24, 0);
          Put64(&e[0], r.key);
          bool holder = pr.IsHolder(r.nexus_key);
          if (holder) {
            e[12] = 0x01;  // R_HOLDER
            e[13] = uint8_t(pr.type);
          }
          Put16(&e[18], r.relative_target_port);
          std::vector<uint8_t> tid = TransportId(r.initiator_port);
          Put32(&e[20], uint32_t(tid.size()));
          e.insert(e.end(), tid.begin(), tid.end());
          d.insert(d.end(), e.begin(), e.end());
        }
        break;
    }
    if (action != kReportCapabilities) Put32(&d[4], uint32_t(d.size() - 8));
  }
  ReturnData(std::move(cmd), d, alloc);
}

void HandleReserve(CommandPtr cmd) {
  LogicalUnit& lu = *cmd->lu;
  const uint8_t* cdb = cmd->cdb();
  if (cdb[0] == op::kReserve10 && (cdb[1] & 0x12)) {  // 3RDPTY, LONGID
    FailCdbField(std::move(cmd), 1);
    return;
  }
  bool conflict = false;
  {
    absl::MutexLock lock(&lu.mu);
    if (lu.spc2_holder && *lu.spc2_holder != cmd->nexus_key) {
      conflict = true;
    } else {
      lu.spc2_holder = cmd->nexus_key;
    }
  }
  if (conflict) {
    Conflict(std::move(cmd));
  } else {
    Complete(std::move(cmd));
  }
}

void HandleRelease(CommandPtr cmd) {
  LogicalUnit& lu = *cmd->lu;
  const uint8_t* cdb = cmd->cdb();
  if (cdb[0] == op::kRelease10 && (cdb[1] & 0x12)) {
    FailCdbField(std::move(cmd), 1);
    return;
  }
  {
    absl::MutexLock lock(&lu.mu);
    if (lu.spc2_holder && *lu.spc2_holder == cmd->nexus_key) lu.spc2_holder.reset();
  }
  Complete(std::move(cmd));
}

}  // namespace iser::scsi
