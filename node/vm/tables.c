/* Descriptive tables for primitives and AVM instructions (bytecode.h). */
#include "bytecode.h"

const avm_instr_info avm_instr_table[AVM_INSTR_COUNT] = {
#define AVM__INSTR_INFO(id, nm, fam, safety, lo, hi)                                     \
    [AVM_I_##id] = {.name = nm,                                                          \
                    .family = AVM_FAM_##fam,                                             \
                    .unsafe = AVM__SAFETY_##safety,                                      \
                    .min_argc = lo,                                                      \
                    .max_argc = hi},
#define AVM__SAFETY_SAFE false
#define AVM__SAFETY_UNSAFE true
    AVM_INSTR_MAP(AVM__INSTR_INFO)
#undef AVM__INSTR_INFO
};

const avm_prim_info avm_prim_table[AVM_PRIM_COUNT] = {
#define AVM__PRIM_INFO(id, nm, ar) [AVM_PRIM_##id] = {.name = nm, .arity = ar},
    AVM_PRIM_MAP(AVM__PRIM_INFO)
#undef AVM__PRIM_INFO
};
