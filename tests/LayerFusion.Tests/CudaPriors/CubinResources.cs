using System.Buffers.Binary;
using System.Text;

namespace LayerFusion.Tests.CudaPriors;

/// <summary>
/// Reads ptxas' resource attributes from a CUBIN's ".nv.info" ELF section (what cuobjdump
/// --dump-resource-usage reports): EIATTR_REGCOUNT (0x2f) and EIATTR_FRAME_SIZE (0x11), each a
/// size-prefixed (format 0x04) pair of (symbol index, value). A non-zero frame means the kernel
/// uses local memory (spills or a stack array). Defensive: any out-of-range offset throws.
/// </summary>
internal static class CubinResources
{
    public sealed record Usage(int MaxRegisters, int MaxFrameBytes, int Entries);

    public static Usage Read(byte[] elf)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F' || elf[4] != 2)
            throw new InvalidDataException("not a 64-bit ELF image");
        var span = elf.AsSpan();
        long shoff = BinaryPrimitives.ReadInt64LittleEndian(span[0x28..]);
        int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3A..]);
        int shnum = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3C..]);
        int shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3E..]);
        if (shentsize < 64 || shoff < 0 || shoff + (long)shnum * shentsize > elf.Length || shstrndx >= shnum)
            throw new InvalidDataException("section headers out of range");
        (int Name, long Offset, long Size) Section(int i)
        {
            var h = elf.AsSpan((int)(shoff + (long)i * shentsize), 64);
            long off = BinaryPrimitives.ReadInt64LittleEndian(h[0x18..]), size = BinaryPrimitives.ReadInt64LittleEndian(h[0x20..]);
            if (off < 0 || size < 0 || off + size > elf.Length) throw new InvalidDataException($"section {i} out of range");
            return (BinaryPrimitives.ReadInt32LittleEndian(h), off, size);
        }
        var names = Section(shstrndx);
        string Name(int at)
        {
            int start = (int)(names.Offset + at), end = Array.IndexOf(elf, (byte)0, start);
            if (at < 0 || start >= names.Offset + names.Size || end < 0) throw new InvalidDataException("bad section name");
            return Encoding.ASCII.GetString(elf, start, end - start);
        }
        int regs = -1, frame = 0, entries = 0;
        for (int i = 0; i < shnum; i++)
        {
            var s = Section(i);
            if (Name(s.Name) != ".nv.info") continue;
            long p = s.Offset, end = s.Offset + s.Size;
            while (p + 4 <= end)
            {
                byte format = elf[p], attr = elf[p + 1];
                if (format != 0x04) { p += 4; continue; }  // value-less / 16-bit attributes
                int size = BinaryPrimitives.ReadUInt16LittleEndian(span[(int)(p + 2)..]);
                if (p + 4 + size > end) throw new InvalidDataException("attribute runs past its section");
                if ((attr == 0x2f || attr == 0x11) && size == 8)
                {
                    int value = BinaryPrimitives.ReadInt32LittleEndian(span[(int)(p + 8)..]);
                    if (attr == 0x2f) { regs = Math.Max(regs, value); entries++; }
                    else frame = Math.Max(frame, value);
                }
                p += 4 + size;
            }
        }
        if (regs < 0) throw new InvalidDataException("no EIATTR_REGCOUNT in .nv.info");
        return new Usage(regs, frame, entries);
    }
}
