package dev.edgeyard.mobile;

import java.io.DataInputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/**
 * The release's golden data ({@code golden.npz}: input_0.., output_0..) as float32, for the
 * self-test each engine passes before it serves. Reads numpy's .npy format (versions 1-3,
 * C order, little-endian float32/float64/int32/int64/uint8/bool).
 */
public final class Golden {
    public final List<float[]> inputs = new ArrayList<>();
    public final List<long[]> inputShapes = new ArrayList<>();
    public final List<float[]> outputs = new ArrayList<>();
    public final List<long[]> outputShapes = new ArrayList<>();

    public static Golden read(File npz, int nInputs, int nOutputs) throws IOException {
        Golden g = new Golden();
        try (ZipFile z = new ZipFile(npz)) {
            for (int i = 0; i < nInputs; i++) {
                g.inputShapes.add(readNpy(z, "input_" + i, g.inputs));
            }
            for (int i = 0; i < nOutputs; i++) {
                g.outputShapes.add(readNpy(z, "output_" + i, g.outputs));
            }
        }
        return g;
    }

    private static final Pattern DESCR = Pattern.compile("'descr':\\s*'([<>|=])([a-z])(\\d+)'");
    private static final Pattern SHAPE = Pattern.compile("'shape':\\s*\\(([^)]*)\\)");

    private static long[] readNpy(ZipFile z, String name, List<float[]> into) throws IOException {
        ZipEntry e = z.getEntry(name + ".npy");
        if (e == null) {
            throw new IOException("golden data has no " + name + ".npy");
        }
        try (InputStream raw = z.getInputStream(e); DataInputStream in = new DataInputStream(raw)) {
            byte[] magic = new byte[8];
            in.readFully(magic);
            if (magic[0] != (byte) 0x93 || magic[1] != 'N' || magic[2] != 'U') {
                throw new IOException(name + ".npy is not a numpy array file");
            }
            int major = magic[6];
            int headerLen;
            if (major == 1) {
                headerLen = in.readUnsignedByte() | in.readUnsignedByte() << 8;
            } else {
                headerLen = in.readUnsignedByte() | in.readUnsignedByte() << 8
                        | in.readUnsignedByte() << 16 | in.readUnsignedByte() << 24;
            }
            byte[] hb = new byte[headerLen];
            in.readFully(hb);
            String header = new String(hb, StandardCharsets.ISO_8859_1);
            if (header.contains("'fortran_order': True")) {
                throw new IOException(name + ".npy is in Fortran order; edgeyard writes C order");
            }
            Matcher d = DESCR.matcher(header);
            Matcher s = SHAPE.matcher(header);
            if (!d.find() || !s.find()) {
                throw new IOException(name + ".npy has a header this reader does not understand: "
                        + header.trim());
            }
            List<Long> dims = new ArrayList<>();
            for (String part : s.group(1).split(",")) {
                if (!part.trim().isEmpty()) {
                    dims.add(Long.parseLong(part.trim()));
                }
            }
            long[] shape = dims.stream().mapToLong(Long::longValue).toArray();
            long count = 1;
            for (long x : shape) {
                count *= x;
            }
            String kind = d.group(2);
            int size = Integer.parseInt(d.group(3));
            if (d.group(1).equals(">") && size > 1) {
                throw new IOException(name + ".npy is big-endian; edgeyard writes little-endian");
            }
            byte[] data = new byte[Math.toIntExact(count * size)];
            in.readFully(data);
            ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
            float[] out = new float[(int) count];
            for (int i = 0; i < out.length; i++) {
                out[i] = element(b, kind, size, name);
            }
            into.add(out);
            return shape;
        }
    }

    private static float element(ByteBuffer b, String kind, int size, String name) throws IOException {
        switch (kind + size) {
            case "f4": return b.getFloat();
            case "f8": return (float) b.getDouble();
            case "i4": return b.getInt();
            case "i8": return b.getLong();
            case "u1": return b.get() & 0xff;
            case "b1": return b.get() != 0 ? 1f : 0f;
            default:
                throw new IOException(name + ".npy has dtype " + kind + size
                        + "; the self-test reads f4, f8, i4, i8, u1 and b1");
        }
    }
}
