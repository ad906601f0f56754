package dev.edgeyard.mobile;

/** release.json cannot be read, is not an edgeyard manifest, or lacks the profile asked for. */
public class ManifestException extends Exception {
    private static final long serialVersionUID = 1L;

    public ManifestException(String message) {
        super(message);
    }
}
