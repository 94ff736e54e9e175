/* Which of the instruction sets in cpu_isa_table.h the compiler was told it may use for this build: compiled with
 * the build's own CPU flags (-march/-mcpu of the profile), unlike cpu_features.c, which reads this to check the
 * CPU before main(). Data only, so this file holds no instruction a CPU could lack. */
#include "cpu_isa_table.h"

#ifdef BE_ISA_TABLE
const char *const be_build_isa_values[] = BE_ISA_BUILT_VALUES;
#else
typedef int be_no_isa_table; /* another architecture: nothing to check (ISO C wants a declaration) */
#endif
